#!/usr/bin/env python3
"""sentence-transformers throughput on the same prompts as benches/sentence_encoding.rs.

    /root/.venv-ref/bin/python xtask/bench/minilm_python.py --model ~/.cache/img2prompt/models/all-MiniLM-L6-v2

Prints texts/s for batch 32 at 16 and 64 word pieces, torch on CPU with its default threads.
"""
import argparse
import time

import torch
from sentence_transformers import SentenceTransformer

WORDS = ["portrait", "of", "a", "knight", "in", "golden", "armor", "standing", "on", "a", "cliff",
         "at", "sunset", "highly", "detailed", "digital", "painting", "artstation", "concept", "art",
         "sharp", "focus", "illustration", "dramatic", "lighting", "volumetric", "fog", "cinematic",
         "composition", "by", "greg", "rutkowski", "and", "alphonse", "mucha", "8k", "octane",
         "render", "trending", "wide", "angle", "lens", "misty", "forest", "background"]


def prompts(tok, count, tokens):
    out = []
    for i in range(count):
        words, k = [], i
        while True:
            words.append(WORDS[k % len(WORDS)])
            k += 7
            n = len(tok(" ".join(words))["input_ids"])
            if n >= tokens:
                if n > tokens:
                    words.pop()
                break
        out.append(" ".join(words))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    model = SentenceTransformer(args.model, device="cpu")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for tokens in (16, 64):
        texts = prompts(model.tokenizer, 32, tokens)
        model.encode(texts, batch_size=32)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            model.encode(texts, batch_size=32)
            n += len(texts)
        rate = n / (time.perf_counter() - start)
        print(f"tokens {tokens}: {rate:.1f} texts/s (batch 32)")


if __name__ == "__main__":
    main()
