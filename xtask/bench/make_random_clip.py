#!/usr/bin/env python3
"""Random-weight CLIP checkpoints at the real shapes of OpenAI's ViT-B/32 and ViT-L/14.

    /root/.venv-ref/bin/python xtask/bench/make_random_clip.py --arch b32 --out ~/.cache/img2prompt/bench/clip-b32-random
    /root/.venv-ref/bin/python xtask/bench/make_random_clip.py --arch l14 --out ~/.cache/img2prompt/bench/clip-l14-random

(the reference stack: python3 -m venv /root/.venv-ref && /root/.venv-ref/bin/pip install torch
transformers safetensors scikit-image; the fixture generator xtask/fixtures/clip.py, whose
parameter init and tokenizer builder this script reuses, imports scikit-image)

Writes, in HF layout (what CLIPModel.from_pretrained and our Rust loader read):
- config.json            transformers.CLIPConfig with the hyper-parameters of
                         openai/clip-vit-base-patch32 or openai/clip-vit-large-patch14
- model.safetensors      float32, seeded (torch.manual_seed), CLIPModel(config).save_pretrained
- preprocessor_config.json  OpenAI's CLIP preprocessing (224 px, bicubic, CLIP mean/std)
- tokenizer files        vocab.json / merges.txt / tokenizer.json made offline from the OpenAI
                         BPE merges committed in crates/clip-encoder/assets (unless
                         --no-tokenizer); the Rust side has that BPE built in.

For speed work the values do not matter, but for the equal-work check in vs_torch.py (cosine of
our embeddings vs torch's) they must make the output depend on the input: HF's own init
(normal(0, 0.02) weights, unit layer norms, zero biases) gives near-constant image embeddings
at 12-24 layers, so `--init spread` (the default) redraws the parameters as the clip-encoder
fixtures do (xtask/fixtures/clip.py): weights N(0, 1/fan_in), layer norms 1 + 0.3 N, biases
0.1 N, embeddings 0.5 N. `--init hf` keeps transformers' init.

The real configs both say text `eos_token_id: 2` (the legacy value: HF then pools the text at
the argmax of the input ids, which is the first <|endoftext|> = 49407); `--eos-token-id 49407`
writes the newer form (pool at the first 49407), which gives the same result for normal input.
"""

import argparse
import json
import os
import sys

# The real hyper-parameters (config.json of openai/clip-vit-base-patch32 and
# openai/clip-vit-large-patch14 on the HF hub). Everything not listed is CLIPConfig's default,
# which equals the real value (layer_norm_eps 1e-5, dropout 0, num_channels 3, ...).
ARCHS = {
    "b32": dict(
        name="openai/clip-vit-base-patch32",
        projection_dim=512,
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    patch_size=32),
    ),
    "l14": dict(
        name="openai/clip-vit-large-patch14",
        projection_dim=768,
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    patch_size=14),
    ),
}
TEXT_COMMON = dict(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                   bos_token_id=0, pad_token_id=1)
VISION_COMMON = dict(image_size=224, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5)

# OpenAI's preprocessing (preprocessor_config.json of both real checkpoints, in transformers 5's
# dict form for size / crop_size).
PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def make_config(arch, eos_token_id):
    from transformers import CLIPConfig

    a = ARCHS[arch]
    text = dict(TEXT_COMMON, **a["text"], eos_token_id=eos_token_id, projection_dim=a["projection_dim"])
    vision = dict(VISION_COMMON, **a["vision"], projection_dim=a["projection_dim"])
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=a["projection_dim"],
                      logit_scale_init_value=2.6592)


def fixtures_clip():
    """xtask/fixtures/clip.py, the clip-encoder fixture generator: its `perturb` (the spread
    init) and `build_tokenizer` (OpenAI's BPE from the merges committed in
    crates/clip-encoder/assets) are used here as they are."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "clip.py")
    spec = importlib.util.spec_from_file_location("img2prompt_fixtures_clip", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tokenizer(out):
    """OpenAI's CLIP tokenizer files, made offline from the BPE merges committed in
    crates/clip-encoder/assets (the first 48 894 merges, as open_clip's SimpleTokenizer and HF's
    CLIPTokenizer read them)."""
    tok = fixtures_clip().build_tokenizer(out)
    ids = tok("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], ids
    tok.save_pretrained(out)


def make(arch, out, seed=0, init="spread", eos_token_id=2, tokenizer=True):
    """Writes the checkpoint into `out` (created); returns `out`."""
    import torch
    from transformers import CLIPModel

    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    config = make_config(arch, eos_token_id)
    model = CLIPModel(config).float().eval()
    if init == "spread":
        fixtures_clip().perturb(model, seed + 1)
    model.save_pretrained(out, safe_serialization=True)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
    if tokenizer:
        save_tokenizer(out)
    with open(os.path.join(out, "RANDOM_WEIGHTS.txt"), "w") as f:
        f.write(f"Random weights at the shapes of {ARCHS[arch]['name']} (not a trained model).\n"
                f"Made by xtask/bench/make_random_clip.py --arch {arch} --seed {seed} --init {init} "
                f"--eos-token-id {eos_token_id}{'' if tokenizer else ' --no-tokenizer'}\n"
                f"tokenizer files: {'yes (the committed OpenAI BPE)' if tokenizer else 'no'}\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=["spread", "hf"], default="spread")
    ap.add_argument("--eos-token-id", type=int, choices=[2, 49407], default=2)
    ap.add_argument("--no-tokenizer", action="store_true", help="skip the tokenizer files")
    args = ap.parse_args()
    out = os.path.expanduser(args.out)
    make(args.arch, out, args.seed, args.init, args.eos_token_id, not args.no_tokenizer)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print(f"{args.arch}: {out} ({size / 2**20:.0f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
