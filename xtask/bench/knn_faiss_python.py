#!/usr/bin/env python3
"""Python faiss-cpu baseline for benches/knn_search.rs (same specs, same data, same knobs).

Setup (once):
    python3 -m venv /root/.venv-faiss && /root/.venv-faiss/bin/pip install faiss-cpu numpy
Run:
    /root/.venv-faiss/bin/python xtask/bench/knn_faiss_python.py --n 100000 --dim 512 \
        --specs exact,hnsw,ivf [--threads 2] [--json out.json]

Data: the counter-based generator of knn_index::synth (splitmix64 + Box-Muller, rows
L2-normalised), so both sides search the same vectors (equal to float rounding): --data
clustered (default; clustered_unit_vectors with n/100 centres, sigma 1, centre seed 1, noise
seeds 2 for keys and 3 for queries) or uniform (unit_vectors, seeds 1 and 2). Presets resolve exactly as knn_index::IndexSpec does: exact -> Flat,
hnsw -> HNSW32 (efConstruction 40, efSearch 256), ivf -> IVF{round(sqrt n)},Flat
(nprobe ceil(nlist/4)); metric inner product. Search: top-100, batch 1 (one query per call,
cycling through 1024 queries) and batch 256; plus batch 1 from --threads Python threads (faiss
releases the GIL during search). Reported: queries/s (median of timed rounds), build seconds,
and RSS growth while building (from /proc/self/status).
"""

import argparse
import json
import math
import threading
import time

import numpy as np

import faiss

K = 100
NQ = 1024
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x):
    with np.errstate(over="ignore"):
        z = x + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit_vectors(seed, n, dim, block_rows=65536):
    """Same values as knn_index::synth::unit_vectors(seed, n, dim), as float32 [n, dim]."""
    out = np.empty((n, dim), dtype=np.float32)
    with np.errstate(over="ignore"):
        base = np.uint64(seed) * GOLDEN
    scale = 1.0 / float(1 << 53)
    for r0 in range(0, n, block_rows):
        r1 = min(n, r0 + block_rows)
        e = np.arange(r0 * dim, r1 * dim, dtype=np.uint64)
        with np.errstate(over="ignore"):
            c1 = base + np.uint64(2) * e
            c2 = c1 + np.uint64(1)
        u1 = (splitmix64(c1) >> np.uint64(11)).astype(np.float64) * scale
        u2 = (splitmix64(c2) >> np.uint64(11)).astype(np.float64) * scale
        z = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * math.pi * u2)
        z = z.astype(np.float32).reshape(r1 - r0, dim)
        norms = np.sqrt((z.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
        norms[norms == 0] = 1.0
        out[r0:r1] = (z / norms).astype(np.float32)
    return out


def clustered_unit_vectors(centre_seed, noise_seed, n, dim, clusters, sigma):
    """Same values as knn_index::synth::clustered_unit_vectors."""
    clusters = max(1, clusters)
    centres = unit_vectors(centre_seed, clusters, dim)
    x = unit_vectors(noise_seed, n, dim)
    x = centres[np.arange(n) % clusters] + np.float32(sigma) * x
    x /= np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)).astype(np.float32)
    return x.astype(np.float32)


def resolve(spec, n, dim):
    """(factory string, {param: value}, efConstruction or None) like knn_index::IndexSpec."""
    nlist = max(1, int(round(math.sqrt(n))))
    if spec in ("exact", "flat"):
        return "Flat", {}, None
    if spec == "hnsw":
        return "HNSW32", {"efSearch": 256}, 40
    if spec == "ivf":
        return f"IVF{nlist},Flat", {"nprobe": -(-nlist // 4)}, None
    return spec, {}, None


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def timed_rounds(fn, queries_per_call, min_seconds=4.0, rounds=10):
    """Median queries/s over `rounds` rounds filling about min_seconds in total."""
    fn()  # warm up
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-6)
    calls = max(1, int(min_seconds / rounds / one))
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = time.perf_counter() - t
        rates.append(calls * queries_per_call / dt)
    rates.sort()
    return rates[len(rates) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--specs", default="exact,hnsw,ivf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write results to this file")
    ap.add_argument("--data", default="clustered", choices=["clustered", "uniform"])
    args = ap.parse_args()

    n, dim = args.n, args.dim
    t = time.perf_counter()
    if args.data == "uniform":
        keys = unit_vectors(1, n, dim)
        queries = unit_vectors(2, NQ, dim)
    else:
        clusters = max(1, n // 100)
        keys = clustered_unit_vectors(1, 2, n, dim, clusters, 1.0)
        queries = clustered_unit_vectors(1, 3, NQ, dim, clusters, 1.0)
    print(f"data: {n} x {dim} generated in {time.perf_counter() - t:.1f}s; faiss {faiss.__version__}, "
          f"omp threads {faiss.omp_get_max_threads()}", flush=True)
    results = []
    for spec in [s.strip() for s in args.specs.split(",") if s.strip()]:
        factory, params, efc = resolve(spec, n, dim)
        rss0 = rss_mib()
        t = time.perf_counter()
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        ps = faiss.ParameterSpace()
        if efc is not None:
            ps.set_index_parameter(index, "efConstruction", efc)
        if not index.is_trained:
            nlist = max(1, int(round(math.sqrt(n))))
            s = min(n, max(256 * nlist, 65536))
            rows = (np.arange(s, dtype=np.int64) * n) // s
            index.train(keys[rows])
        for r0 in range(0, n, 65536):
            index.add(keys[r0:r0 + 65536])
        build_s = time.perf_counter() - t
        rss1 = rss_mib()
        for name, value in params.items():
            ps.set_index_parameter(index, name, value)

        state = {"at": 0}

        def batch1():
            i = state["at"] % NQ
            state["at"] += 1
            index.search(queries[i:i + 1], K)

        def batch256():
            i = state["at"] % (NQ - 256 + 1)
            state["at"] += 256
            index.search(queries[i:i + 256], K)

        qps1 = timed_rounds(batch1, 1)
        qps256 = timed_rounds(batch256, 256)

        def threaded(total=2000):
            per = total // args.threads

            def work(th):
                for j in range(per):
                    q = (th * 7919 + j) % NQ
                    index.search(queries[q:q + 1], K)

            ts = [threading.Thread(target=work, args=(th,)) for th in range(args.threads)]
            t0 = time.perf_counter()
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            return per * args.threads / (time.perf_counter() - t0)

        total = max(20 * args.threads, int(2.0 * qps1))  # about 2 s per round
        threaded(max(2 * args.threads, total // 10))
        qps_thr = sorted(threaded(total) for _ in range(5))[2]
        row = {
            "data": args.data, "spec": spec, "factory": factory, "n": n, "dim": dim, "k": K,
            "build_s": round(build_s, 2), "rss_growth_mib": round(rss1 - rss0), "rss_mib": round(rss1),
            "qps_batch1": round(qps1, 1), "qps_batch256": round(qps256, 1),
            f"qps_batch1_threads{args.threads}": round(qps_thr, 1),
            "params": params,
        }
        print(json.dumps(row), flush=True)
        results.append(row)
        del index
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
