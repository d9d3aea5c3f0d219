#!/usr/bin/python3
"""Recording speed and memory on realistic model shapes (a benchmark, not a test).

Builds the release build, writes random-weight GGUFs with TinyLlama-1.1B's shapes (width 2048,
22 layers, 32 heads, 4 kv heads, feed-forward 5632, vocabulary 32000) in each TYPE with kvtrace's
own quantizer into bench-out/ (kept for later runs), and for each thread count records
  prefill: 512 prompt ids in blocks of --batch      -> prompt tokens/s, GFLOP/s vs OpenBLAS sgemm
  decode:  1 id, then 128 generated one at a time    -> tokens/s vs the memory-bandwidth bound
plus load time and peak resident memory against file + KV cache.  The machine's load average is
printed first: figures taken on a busy machine are lower bounds.  --repeat N runs every measurement
N times and keeps the best (highest bandwidth, GFLOP/s and tokens/s), the run least disturbed by
other jobs on a shared machine.

usage: bench/real_models.py [--types Q4_K,Q8_0] [--threads 1,2] [--batch 128] [--repeat 1]"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from gguf_numpy import TYPES, Gguf  # noqa: E402

BUILD = os.path.join(ROOT, "build")
OUT = os.path.join(ROOT, "bench-out")
KVTRACE = os.path.join(BUILD, "kvtrace")
TOOL = os.path.join(BUILD, "bench", "bench_models")
PROMPT, GENERATE = 512, 128


def sh(*args):
    return subprocess.run(list(map(str, args)), check=True, capture_output=True, text=True)


def model_facts(path):
    """Bytes of the matrices one token reads, and matrix FLOPs per token (token_embd is a lookup)."""
    g = Gguf(path)
    read, flops = 0, 0
    for name, (dims, ttype, raw) in g.tensors.items():
        if name == "token_embd.weight":
            continue
        read += raw.nbytes
        if len(dims) == 2:
            flops += 2 * dims[0] * dims[1]
    if "output.weight" not in g.tensors:  # tied: the classifier reads the embedding
        dims, _, raw = g.tensors["token_embd.weight"]
        read += raw.nbytes
        flops += 2 * dims[0] * dims[1]
    meta = g.meta
    return read, flops, meta


def record(model, threads, batch, *args):
    trace = os.path.join(OUT, "bench-trace.h5")
    p = sh(KVTRACE, "record", model, *args, "--threads", threads, "--batch", batch, "-o", trace, "--force")
    err = p.stderr
    os.remove(trace)
    num = lambda pattern: float(re.search(pattern, err).group(1))
    out = {"load": num(r"loaded and checked in ([\d.]+) s"), "peak": num(r"peak=([\d.]+)MiB"),
           "before": num(r"before_model=([\d.]+)MiB"), "file": num(r"model_file=([\d.]+)MiB"),
           "kv": num(r"kv_cache=([\d.]+)MiB")}
    m = re.search(r"prompt (\d+) tokens in ([\d.]+) s", err)
    if m and int(m.group(1)) > 1:
        out["prompt_tps"] = int(m.group(1)) / float(m.group(2))
    m = re.search(r"one at a time (\d+) tokens in ([\d.]+) s", err)
    if m:
        out["step_tps"] = int(m.group(1)) / float(m.group(2))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="Q4_K,Q8_0")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    best = lambda measure: max(measure() for _ in range(a.repeat))
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        sh("meson", "setup", BUILD)
    sh("ninja", "-C", BUILD)
    print(f"uptime: {sh('uptime').stdout.strip()}")
    print(f"kernels: {sh(TOOL, 'kernels').stdout.splitlines()[0]}")
    threads = [int(t) for t in a.threads.split(",")]
    bandwidth = {t: best(lambda: float(sh(TOOL, "bandwidth", t).stdout)) for t in threads}
    for t in threads:
        print(f"memory read bandwidth, {t} thread(s): {bandwidth[t]:.1f} GB/s")
    sgemm = {t: best(lambda: float(sh(TOOL, "sgemm", t, a.batch).stdout)) for t in threads}
    for t in threads:
        print(f"OpenBLAS sgemm on the prefill shapes (blocks of {a.batch}), {t} thread(s): {sgemm[t]:.1f} GFLOP/s")
    rows = []
    for ttype in a.types.split(","):
        model = os.path.join(OUT, f"tinyllama-{ttype}.gguf")
        if not os.path.exists(model):
            print(f"writing {model} ...", flush=True)
            sh(TOOL, "write", model, ttype)
        read, matrix_flops, meta = model_facts(model)
        L, dim = meta["llama.block_count"], meta["llama.embedding_length"]
        attention_flops = 4 * L * dim * (PROMPT + 1) / 2  # q.k and p.v per prompt token, mean context
        prompt_ids = ",".join(str(3 + i * 7919 % 31990) for i in range(PROMPT))
        for t in threads:
            pre = max((record(model, t, a.batch, "--tokens", prompt_ids) for _ in range(a.repeat)),
                      key=lambda r: r["prompt_tps"])
            dec = max((record(model, t, a.batch, "--tokens", 1, "--generate", GENERATE, "--no-stop")
                       for _ in range(a.repeat)), key=lambda r: r["step_tps"])
            gflops = pre["prompt_tps"] * (matrix_flops + attention_flops) / 1e9
            bound = bandwidth[t] * 1e9 / read
            rows.append((ttype, t, pre, dec, gflops, bound, sgemm[t]))
    print()
    print("| model | threads | file | load | peak resident (prefill / decode) | prefill 512 | prefill GFLOP/s "
          "(vs sgemm) | decode | decode vs bandwidth bound |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ttype, t, pre, dec, gflops, bound, sg in rows:
        fk_pre, fk_dec = pre["file"] + pre["kv"], dec["file"] + dec["kv"]
        print(f"| TinyLlama-shaped {ttype} | {t} | {pre['file']:.0f} MiB | {pre['load']:.2f} s | "
              f"{pre['peak'] - pre['before']:.0f} MiB = {(pre['peak'] - pre['before']) / fk_pre:.2f}x / "
              f"{dec['peak'] - dec['before']:.0f} MiB = {(dec['peak'] - dec['before']) / fk_dec:.2f}x (file + KV) | "
              f"{pre['prompt_tps']:.1f} tokens/s | {gflops:.1f} ({100 * gflops / sg:.0f} %) | "
              f"{dec['step_tps']:.1f} tokens/s | {bound:.1f} tokens/s ({100 * dec['step_tps'] / bound:.0f} %) |")
    print(f"\nuptime after: {sh('uptime').stdout.strip()}")


if __name__ == "__main__":
    main()
