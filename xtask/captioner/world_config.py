"""The world captioner's architecture and vocabulary (the world CLIP's word-level tokenizer)."""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "crates", "img2prompt-world", "assets", "world-clip", "tokenizer.json")


def world_config():
    vocab = json.load(open(TOKENIZER))["model"]["vocab"]
    words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[w] for w in words] == list(range(len(words)))
    return {
        "image_size": 64,
        "pixel_mean": 0.5,
        "pixel_std": 0.25,
        "convs": [
            {"channels": 48, "kernel": 4, "stride": 2, "padding": 1},
            {"channels": 96, "kernel": 3, "stride": 2, "padding": 1},
            {"channels": 128, "kernel": 3, "stride": 1, "padding": 1},
            {"channels": 128, "kernel": 3, "stride": 2, "padding": 1},
        ],
        "width": 128,
        "heads": 4,
        "mlp": 512,
        "encoder_layers": 1,
        "decoder_layers": 3,
        "max_tokens": 32,
        "layer_norm_eps": 1e-5,
        "vocab": words,
        "bos": vocab["<|startoftext|>"],
        "eos": vocab["<|endoftext|>"],
        "pad": vocab["[PAD]"],
        "unk": vocab["[UNK]"],
    }
