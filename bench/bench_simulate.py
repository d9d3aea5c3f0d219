"""Replay throughput of `kvtrace simulate` against a vectorised NumPy replay
of the same streaming semantics (a benchmark, not a test).

usage: bench_simulate.py KVTRACE TRACE.h5 WORKDIR [LAYERS]

Entries = cached tokens scored per step per cache unit (Σ_t |C_t| per unit
and configuration).  kvtrace's time is split into attention (recomputed from
q and k with sgemm) and replay proper (policy scoring, retained mass, KL);
the NumPy replay gets its attention rows precomputed in blocks and is timed
on the same two parts.  NumPy checks the result: its mean retained mass must
equal kvtrace's."""
import os
import subprocess
import sys
import time

import h5py
import numpy as np

KVTRACE, TRACE, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
LAYERS = int(sys.argv[4]) if len(sys.argv) > 4 else 2


def simulate(trace, *args):
    out = os.path.join(WORK, "bench-results.h5")
    subprocess.run([KVTRACE, "simulate", trace, "--error-stride", "0", *args, "-o", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with h5py.File(out) as f:
        a = dict(f.attrs)
        mass = float(np.nanmean(f["metrics/retained_mass"][:]))
    return a["entries"], a["cpu_seconds_replay"], a["cpu_seconds_attention"], a["seconds"], mass


def numpy_h2o(q, k, budget, recent=0.5, block=64):
    """Streaming H2O as a researcher would write it: vectorised over cache
    units, one Python step per token.  q [T,H,d], k [T,KV,d]."""
    T, H, d = q.shape
    KV = k.shape[1]
    G = H // KV
    R = max(int(np.floor(recent * budget + 0.5)), 1)
    qg = q.reshape(T, KV, G, d).astype(np.float32)
    kt = np.ascontiguousarray(k.transpose(1, 2, 0)).astype(np.float32)  # [KV, d, T]
    scores = np.zeros((KV, T))
    held = np.zeros((KV, T), bool)
    units = np.arange(KV)
    t_att = t_replay = 0.0
    mass_sum, rows, entries, n = 0.0, 0, 0, 0
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        s = time.perf_counter()
        logits = np.einsum("tugd,udi->tugi", qg[t0:t1], kt[:, :, :t1]) / np.sqrt(d)  # [rows, KV, G, t1]
        logits += np.triu(np.full((t1 - t0, t1), -np.inf), t0 + 1)[:, None, None, :]
        att = np.exp(logits - logits.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        t_att += time.perf_counter() - s
        s = time.perf_counter()
        for t in range(t0, t1):
            held[:, t] = True
            n += 1
            if n > budget:
                cand = held[:, :t + 1].copy()
                cand[:, max(0, t - R + 1):] = False
                victim = np.where(cand, scores[:, :t + 1], np.inf).argmin(1)  # ties: the oldest
                held[units, victim] = False
                n -= 1
            a = att[t - t0, :, :, :t + 1]  # [KV, G, t+1]
            kept = a * held[:, None, :t + 1]
            m = kept.sum(-1)  # [KV, G]
            scores[:, :t + 1] += (kept / m[..., None]).sum(1)
            entries += KV * n
            if t >= budget:
                mass_sum += m.sum()
                rows += KV * G
        t_replay += time.perf_counter() - s
    return entries, t_replay, t_att, mass_sum / rows


def layer_arrays(trace, layer):
    with h5py.File(trace) as f:
        s = f["sequences/0000"]
        return s[f"layers/{layer:03d}/q"][:].astype(np.float32), s[f"layers/{layer:03d}/k"][:].astype(np.float32)


def report(name, trace, policies, budget, numpy_layer=0):
    print(f"\n{name}: one thread, budget {budget}, output error off")
    print(f"  {'policy':<8} {'entries':>12} {'replay G/s/core':>16} {'with attention':>15}")
    for p in policies:
        e, cpu_r, cpu_a, wall, mass = simulate(trace, "--policy", p, "--budget", budget, "--threads", "1")
        print(f"  {p:<8} {e:>12,d} {e / cpu_r / 1e9:>16.2f} {e / (cpu_r + cpu_a) / 1e9:>15.2f}")


def compare_numpy(trace, budget_fraction):
    """H2O on layer 0 of the first sequence (kvtrace is given only that sequence's trace)."""
    with h5py.File(trace) as f:
        T = f["sequences/0000/tokens"].shape[0]
    budget = max(1, int(np.floor(budget_fraction * T + 0.5)))
    q, k = layer_arrays(trace, 0)
    e_np, t_np, t_np_att, mass_np = numpy_h2o(q, k, budget)
    e, cpu_r, cpu_a, wall, mass = simulate(trace, "--policy", "h2o", "--budget", str(budget), "--threads", "1",
                                           "--layers", "0")
    return e_np, t_np, t_np_att, mass_np, e, cpu_r, cpu_a, mass


def first_sequence(trace):
    """A copy of the trace holding only its first sequence."""
    out = os.path.join(WORK, "first-sequence.h5")
    with h5py.File(trace) as src, h5py.File(out, "w") as dst:
        for key, v in src.attrs.items():
            dst.attrs[key] = v
        dst.attrs["n_sequences"] = 1
        src.copy("sequences/0000", dst, "sequences/0000")
    return out


def synthetic_trace(path, layers, T=4096, H=32, d=128):
    """Llama-2-7B-shaped attention: 32 heads, head size 128, 4096 tokens.
    Logits q.k/sqrt(d) are about N(0, 1), plus a sink direction shared by the
    first four keys (+3.5) and a slowly drifting component shared by queries
    and keys (locality), so attention has heavy hitters and recency."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
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
        for l in range(layers):
            u = rng.standard_normal((1, H, d)).astype(np.float32)
            u /= np.linalg.norm(u, axis=2, keepdims=True)
            walk = np.cumsum(rng.standard_normal((T, H, d)).astype(np.float32), axis=0)
            walk /= np.sqrt(np.arange(1, T + 1, dtype=np.float32))[:, None, None]  # ~unit variance per dim
            local = 0.5 * walk
            q = rng.standard_normal((T, H, d)).astype(np.float32) + 2.0 * u + local
            k = rng.standard_normal((T, H, d)).astype(np.float32) + local
            k[:4] += 20.0 * u
            v = rng.standard_normal((T, H, d)).astype(np.float32)
            g = s.create_group(f"layers/{l:03d}")
            g["q"], g["k"], g["v"] = q.astype(np.float16), k.astype(np.float16), v.astype(np.float16)
            k32, v32 = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
            g["k_norm"] = np.linalg.norm(k32, axis=2)
            g["v_norm_l1"] = np.abs(v32).sum(2)
            g["v_norm_l2"] = np.linalg.norm(v32, axis=2)


def main():
    four = ["h2o", "a2sf", "tova", "knorm"]
    print("kvtrace simulate throughput (entries = cached tokens scored per step per cache unit)")
    report("stories260K traces (6 sequences, 5 layers x 4 kv heads, T ~ 230)", TRACE, four, "20%")
    e_np, t_np, t_np_att, mass_np, e, cpu_r, cpu_a, mass = compare_numpy(first_sequence(TRACE), 0.2)
    print(f"  H2O layer 0 of sequence 0 vs NumPy: kvtrace mass {mass:.6f}, NumPy {mass_np:.6f}")

    syn = os.path.join(WORK, "synthetic-7B.h5")
    t0 = time.perf_counter()
    synthetic_trace(syn, LAYERS)
    print(f"\nsynthetic Llama-2-7B-shaped trace: {LAYERS} layers x 32 heads x 4096 tokens x 128 "
          f"(written in {time.perf_counter() - t0:.0f} s)")
    report(f"synthetic 7B-shaped trace, {LAYERS} layers", syn, four, "20%")
    e_np, t_np, t_np_att, mass_np, e, cpu_r, cpu_a, mass = compare_numpy(syn, 0.2)
    print(f"\n  H2O, one layer, one thread: kvtrace vs vectorised NumPy (same replay, mass {mass:.6f} vs {mass_np:.6f})")
    print(f"    replay:          kvtrace {e / cpu_r / 1e9:6.2f} G entries/s   NumPy {e_np / t_np / 1e9:6.3f} G entries/s"
          f"   ratio {(e / cpu_r) / (e_np / t_np):5.0f}x")
    print(f"    with attention:  kvtrace {e / (cpu_r + cpu_a) / 1e9:6.2f} G entries/s   NumPy "
          f"{e_np / (t_np + t_np_att) / 1e9:6.3f} G entries/s   ratio {(e / (cpu_r + cpu_a)) / (e_np / (t_np + t_np_att)):5.0f}x")

    ten = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv", "random"]
    args = sum([["--policy", p] for p in ten], []) + ["--budget", "2%,5%,10%,20%,30%,40%,60%,80%", "--threads", "2"]
    e, cpu_r, cpu_a, wall, mass = simulate(syn, *args)
    print(f"\n  all 10 policies x 8 budgets, 2 threads: {wall:.1f} s for {LAYERS} layers "
          f"({e / 1e9:.1f} G entries, {e / (cpu_r + cpu_a) / 1e9:.2f} G entries/s per core with attention)")
    print(f"    extrapolated to 32 layers: {wall * 32 / LAYERS / 60:.1f} min")
    os.remove(syn)


main()
