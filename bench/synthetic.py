"""Synthetic Llama-2-7B-shaped traces, for the benchmarks (bench_simulate.py,
bench_mpi.py) and for trying kvtrace on long contexts without a model:
logits q.k/sqrt(d) about N(0, 1), plus a sink direction shared by the first
four keys and a slowly drifting component shared by queries and keys
(locality), so attention has heavy hitters and recency; q, k, v stored as
float16, as `kvtrace record --half` stores them.

usage: synthetic.py OUT.h5 [--tokens T] [--layers L] [--heads H] [--head-dim D] [--force]
(defaults: 32768 tokens, 1 layer, 32 heads of 128, as the benchmarks' long
trace).  An existing OUT.h5 is replaced only with --force; the file appears
only once it is complete."""
import argparse
import os
import sys

import h5py
import numpy as np


def write_layer(sequence, layer, rng, T, H, d):
    """Writes layers/{layer} of an h5py sequence group, drawing from rng."""
    u = rng.standard_normal((1, H, d)).astype(np.float32)
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    walk = np.cumsum(rng.standard_normal((T, H, d)).astype(np.float32), axis=0)
    walk /= np.sqrt(np.arange(1, T + 1, dtype=np.float32))[:, None, None]  # ~unit variance per dim
    local = 0.5 * walk
    q = rng.standard_normal((T, H, d)).astype(np.float32) + 2.0 * u + local
    k = rng.standard_normal((T, H, d)).astype(np.float32) + local
    k[:4] += 20.0 * u
    v = rng.standard_normal((T, H, d)).astype(np.float32)
    g = sequence.create_group(f"layers/{layer:03d}")
    g["q"], g["k"], g["v"] = q.astype(np.float16), k.astype(np.float16), v.astype(np.float16)
    k32, v32 = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
    g["k_norm"] = np.linalg.norm(k32, axis=2)
    g["v_norm_l1"] = np.abs(v32).sum(2)
    g["v_norm_l2"] = np.linalg.norm(v32, axis=2)


def trace_header(f, layers, T, H, d):
    """The root attributes and sequence 0's token data of a synthetic trace."""
    for key, v in dict(format="kvtrace-trace/1", n_layers=layers, n_heads=H, n_kv_heads=H, head_dim=d,
                       model_dim=H * d, vocab_size=32000, rope_theta=10000.0, complete=1,
                       model_sha256="synthetic-7B-shaped", model_name="synthetic").items():
        f.attrs[key] = v
    s = f.create_group("sequences/0000")
    s.attrs["n_prompt"] = 1
    s.attrs["complete"] = 1
    s["tokens"] = np.zeros(T, np.int32)
    s["pieces"] = np.array([b"x"] * T, dtype=h5py.string_dtype())
    s["nll"] = np.zeros(T, np.float32)
    return s


def long_trace(path, layers, T, H=32, d=128, chunk=4096):
    """The same kind of trace at any length, written a chunk of rows at a time
    (float16 q, k, v, as a 7B recording with --half stores them)."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        s = trace_header(f, layers, T, H, d)
        for l in range(layers):
            g = s.create_group(f"layers/{l:03d}")
            data = {n: g.create_dataset(n, (T, H, d), np.float16) for n in ("q", "k", "v")}
            norms = {n: g.create_dataset(n, (T, H), np.float32) for n in ("k_norm", "v_norm_l1", "v_norm_l2")}
            u = rng.standard_normal((1, H, d)).astype(np.float32)
            u /= np.linalg.norm(u, axis=2, keepdims=True)
            total = np.zeros((1, H, d), np.float32)
            for t0 in range(0, T, chunk):
                n = min(chunk, T - t0)
                walk = total + np.cumsum(rng.standard_normal((n, H, d)).astype(np.float32), axis=0)
                total = walk[-1:]
                local = 0.5 * walk / np.sqrt(np.arange(t0 + 1, t0 + n + 1, dtype=np.float32))[:, None, None]
                q = (rng.standard_normal((n, H, d)).astype(np.float32) + 2.0 * u + local).astype(np.float16)
                k = rng.standard_normal((n, H, d)).astype(np.float32) + local
                if t0 == 0:
                    k[:4] += 20.0 * u
                k = k.astype(np.float16)
                v = rng.standard_normal((n, H, d)).astype(np.float16)
                data["q"][t0:t0 + n], data["k"][t0:t0 + n], data["v"][t0:t0 + n] = q, k, v
                k32, v32 = k.astype(np.float32), v.astype(np.float32)
                norms["k_norm"][t0:t0 + n] = np.linalg.norm(k32, axis=2)
                norms["v_norm_l1"][t0:t0 + n] = np.abs(v32).sum(2)
                norms["v_norm_l2"][t0:t0 + n] = np.linalg.norm(v32, axis=2)


def main(argv):
    parser = argparse.ArgumentParser(prog="synthetic.py", description="Writes a synthetic 7B-shaped kvtrace trace.")
    parser.add_argument("output")
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    a = parser.parse_args(argv)
    if min(a.tokens, a.layers, a.heads, a.head_dim) < 1:
        parser.error("--tokens, --layers, --heads and --head-dim must be at least 1")
    if os.path.exists(a.output) and not a.force:
        parser.error(f"{a.output} exists (pass --force to replace it)")
    partial = a.output + ".partial"
    long_trace(partial, a.layers, a.tokens, H=a.heads, d=a.head_dim)
    os.replace(partial, a.output)
    print(f"{a.output}: {a.layers} layer(s) x {a.heads} heads x {a.tokens} tokens, head size {a.head_dim}, "
          f"float16 q/k/v ({os.path.getsize(a.output) / 2**20:.0f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
