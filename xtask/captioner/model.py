"""The captioner of crates/image-captioner in PyTorch: the training side and the reference.

Layer names are the safetensors names the Rust crate loads (`conv.0.weight`, `img_pos`,
`enc.0.attn.q.weight`, `dec.0.cross_attn.o.bias`, `head.weight`, ...). `Captioner(config)` takes
the same dict as config.json (see crates/image-captioner/src/config.rs), and `save(model, config,
dir)` writes config.json and model.safetensors with the weights' xxh3.
"""

import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "img2prompt-captioner/1"


class Attn(nn.Module):
    def __init__(s, d, heads):
        super().__init__()
        s.h = heads
        s.q, s.k, s.v, s.o = (nn.Linear(d, d) for _ in range(4))

    def forward(s, x, m, causal):
        B, T, D = x.shape
        S = m.shape[1]
        split = lambda t, n: t.view(B, n, s.h, D // s.h).transpose(1, 2)
        y = F.scaled_dot_product_attention(split(s.q(x), T), split(s.k(m), S), split(s.v(m), S), is_causal=causal)
        return s.o(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(s, d, hidden):
        super().__init__()
        s.fc1, s.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x)))


class EncLayer(nn.Module):
    def __init__(s, c):
        super().__init__()
        d, e = c["width"], c["layer_norm_eps"]
        s.ln1, s.attn, s.ln2, s.mlp = nn.LayerNorm(d, e), Attn(d, c["heads"]), nn.LayerNorm(d, e), MLP(d, c["mlp"])

    def forward(s, x):
        h = s.ln1(x)
        x = x + s.attn(h, h, False)
        return x + s.mlp(s.ln2(x))


class DecLayer(nn.Module):
    def __init__(s, c):
        super().__init__()
        d, e = c["width"], c["layer_norm_eps"]
        s.ln1, s.self_attn = nn.LayerNorm(d, e), Attn(d, c["heads"])
        s.ln2, s.cross_attn = nn.LayerNorm(d, e), Attn(d, c["heads"])
        s.ln3, s.mlp = nn.LayerNorm(d, e), MLP(d, c["mlp"])

    def forward(s, x, m):
        h = s.ln1(x)
        x = x + s.self_attn(h, h, True)
        x = x + s.cross_attn(s.ln2(x), m, False)
        return x + s.mlp(s.ln3(x))


def grid(c):
    side = c["image_size"]
    for v in c["convs"]:
        side = (side + 2 * v["padding"] - v["kernel"]) // v["stride"] + 1
    return side


class Captioner(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.c = c
        d, e = c["width"], c["layer_norm_eps"]
        chans, convs = 3, []
        for v in c["convs"]:
            convs.append(nn.Conv2d(chans, v["channels"], v["kernel"], v["stride"], v["padding"]))
            chans = v["channels"]
        s.conv = nn.ModuleList(convs)
        s.img_pos = nn.Parameter(torch.randn(grid(c) ** 2, d) * 0.02)
        s.enc = nn.ModuleList([EncLayer(c) for _ in range(c["encoder_layers"])])
        s.enc_ln = nn.LayerNorm(d, e)
        s.tok = nn.Embedding(len(c["vocab"]), d)
        s.pos = nn.Parameter(torch.randn(c["max_tokens"], d) * 0.02)
        s.dec = nn.ModuleList([DecLayer(c) for _ in range(c["decoder_layers"])])
        s.ln = nn.LayerNorm(d, e)
        s.head = nn.Linear(d, len(c["vocab"]))

    def pixels(s, rgb_uint8):
        """[b, h, w, 3] uint8 (numpy or tensor) -> normalised [b, 3, h, w] float32."""
        x = torch.as_tensor(rgb_uint8).float().permute(0, 3, 1, 2) / 255.0
        return (x - s.c["pixel_mean"]) / s.c["pixel_std"]

    def encode(s, x):
        for conv in s.conv:
            x = F.gelu(conv(x))
        x = x.flatten(2).transpose(1, 2) + s.img_pos
        for layer in s.enc:
            x = layer(x)
        return s.enc_ln(x)

    def decode(s, m, y):
        x = s.tok(y) + s.pos[: y.shape[1]]
        for layer in s.dec:
            x = layer(x, m)
        return s.head(s.ln(x))

    @torch.no_grad()
    def generate(s, x):
        """Greedy decoding as the Rust crate does it: token ids per image, without start/end."""
        c = s.c
        m = s.encode(x)
        B = len(m)
        y = torch.full((B, 1), c["bos"], dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        banned = [c["pad"], c["bos"]] + ([c["unk"]] if c.get("unk") is not None else [])
        for _ in range(c["max_tokens"] - 1):
            lg = s.decode(m, y)[:, -1].clone()
            lg[:, banned] = float("-inf")
            nx = lg.argmax(-1)
            nx[done] = c["pad"]
            y = torch.cat([y, nx[:, None]], 1)
            done |= nx == c["eos"]
            if done.all():
                break
        out = []
        for row in y[:, 1:].tolist():
            ids = []
            for t in row:
                if t in (c["eos"], c["pad"]):
                    break
                ids.append(t)
            out.append(ids)
        return out


def detokenize(c, ids):
    out = ""
    for t in ids:
        w = c["vocab"][t]
        if out and not all(ch in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" for ch in w):
            out += " "
        out += w
    return out


def save(model, config, out_dir, dtype=torch.float16):
    """Writes out_dir/model.safetensors (dtype) and out_dir/config.json (with weights_xxh3)."""
    import xxhash
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, "model.safetensors")
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, weights)
    with open(weights, "rb") as f:
        digest = xxhash.xxh3_64_hexdigest(f.read())
    config = dict(config, format=FORMAT, weights_xxh3=digest)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    return config
