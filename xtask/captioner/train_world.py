#!/usr/bin/env python3
"""Trains the shipped world captioner (crates/img2prompt-world/assets/world-captioner/).

The captioner writes a prompt from the image alone: a convolutional encoder and a 3-layer
transformer decoder (model.py), trained with cross-entropy on the canonical prompts of rendered
corpus scenes (teacher forcing). Validation, test and cross-domain prompts are never trained on.
PyTorch on the CPU; the Rust crate image-captioner runs the result.

    cargo xtask world-renders --out /tmp/captioner-data --variants 3
    /root/.venv-ref/bin/python xtask/captioner/train_world.py --data /tmp/captioner-data \
        --minutes 58 --steps 7500 --checkpoint /tmp/captioner.pt
    # optional cool-down from that checkpoint: linear decay to 0
    /root/.venv-ref/bin/python xtask/captioner/train_world.py --data /tmp/captioner-data \
        --resume /tmp/captioner.pt --lr 2.5e-4 --schedule linear --warmup 0 --steps 1500 \
        --minutes 20 --checkpoint /tmp/captioner2.pt
    /root/.venv-ref/bin/python xtask/captioner/train_world.py --data /tmp/captioner-data \
        --export /tmp/captioner2.pt --out crates/img2prompt-world/assets/world-captioner

Needs torch, numpy, safetensors and xxhash. Training prints the loss every 100 steps and the
greedy exact-match rate on 200 validation images every 1000; `--export` writes config.json and
model.safetensors (f16) and prints the exact-match rate on the validation split.
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Captioner, detokenize, save  # noqa: E402
from world_config import world_config  # noqa: E402


def load_split(data, name, config):
    prompts = [line.rstrip("\n") for line in open(os.path.join(data, f"{name}.txt"))]
    size = config["image_size"]
    images = np.memmap(os.path.join(data, f"{name}.u8"), dtype=np.uint8, mode="r").reshape(len(prompts), size, size, 3)
    index = {w: i for i, w in enumerate(config["vocab"])}
    L = config["max_tokens"]
    tokens = np.full((len(prompts), L), config["pad"], dtype=np.int64)
    for i, p in enumerate(prompts):
        ids = [config["bos"]] + [index[w] for w in p.replace(",", " , ").split()] + [config["eos"]]
        ids = ids[:L]
        tokens[i, : len(ids)] = ids
    return prompts, images, torch.tensor(tokens)


def exact_rate(model, config, images, prompts, n=None, batch=250):
    model.eval()
    n = len(prompts) if n is None else n
    texts = []
    for i in range(0, n, batch):
        ids = model.generate(model.pixels(np.ascontiguousarray(images[i : min(n, i + batch)])))
        texts += [detokenize(config, t) for t in ids]
    model.train()
    return float(np.mean([a == b for a, b in zip(texts, prompts[:n])])), texts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory written by `cargo xtask world-renders`")
    ap.add_argument("--minutes", type=float, default=58.0, help="stop after this many minutes")
    ap.add_argument("--steps", type=int, default=7500, help="schedule length (and step cap)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--schedule", choices=["cosine", "linear"], default="cosine")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", help="start from this checkpoint (a state dict)")
    ap.add_argument("--checkpoint", help="write the state dict here every 1000 steps and at the end")
    ap.add_argument("--export", help="instead of training: export this checkpoint to --out")
    ap.add_argument("--out", help="captioner directory written by --export")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count() or 2)
    torch.manual_seed(args.seed)
    config = world_config()
    model = Captioner(config)
    val_prompts, val_images, _ = load_split(args.data, "val", config)

    if args.export:
        model.load_state_dict(torch.load(args.export))
        save(model, config, args.out)
        exported = Captioner(config)
        exported.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        rate, _ = exact_rate(exported, config, val_images, val_prompts)
        print(f"wrote {args.out}; validation exact match (f16 weights) {rate:.3f}")
        return
    if not args.checkpoint:
        ap.error("--checkpoint is required to train")
    if args.resume:
        model.load_state_dict(torch.load(args.resume))
    prompts, images, tokens = load_split(args.data, "train", config)
    print("parameters", sum(p.numel() for p in model.parameters()), "training images", len(prompts), flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    def factor(step):
        warm = min(1.0, (step + 1) / args.warmup) if args.warmup > 0 else 1.0
        progress = min(step, args.steps) / args.steps
        if args.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * progress))
        return warm * (1 - progress)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng(args.seed)
    start, step, ema = time.time(), 0, None
    pad = config["pad"]
    while step < args.steps and time.time() - start < args.minutes * 60:
        rows = np.sort(rng.choice(len(prompts), args.batch, replace=False))
        x = model.pixels(np.ascontiguousarray(images[rows]))
        y = tokens[rows]
        logits = model.decode(model.encode(x), y[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=pad)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        step += 1
        if step % 100 == 0:
            print(step, round(ema, 4), round(time.time() - start), flush=True)
        if step % 1000 == 0:
            rate, texts = exact_rate(model, config, val_images, val_prompts, n=200)
            print(f"  validation exact match (200) {rate:.3f} | {texts[0]} | {val_prompts[0]}", flush=True)
            torch.save(model.state_dict(), args.checkpoint)
    torch.save(model.state_dict(), args.checkpoint)
    print("done", step, "steps in", round(time.time() - start), "s", flush=True)


if __name__ == "__main__":
    main()
