"""Speed of `kvtrace simulate`, `optimal` and `analyze` on 7B-shaped synthetic
traces, against NumPy peers of the same replay (a benchmark, not a test).

usage: bench_simulate.py KVTRACE TRACE WORKDIR [SECTION...]

SECTIONs (default: all, in this order): stories, replay, taskclock, long, peers,
error, stored, optimal, threads, analyze, e2e.  Environment: SIM_LAYERS (layers of the
4096-token trace, default 2), E2E_T (tokens of the end-to-end trace, default
32768), E2E_LAYERS (its layers, measured; default 2, extrapolated to 32),
ANALYZE_T (default 32768).

Entries = cached tokens scored per step per cache unit (Σ_t |C_t| per unit
and configuration).  kvtrace's CPU time is split into attention (recomputed
from q and k with sgemm, or read) and replay proper (policy scoring, retained
mass, KL), both measured as thread CPU time, so a busy machine slows the
figures less than wall clock would.  Every figure is printed with the load
average of the moment: re-run on a quiet machine (`bench/run`) for clean
numbers.  NumPy runs on one thread (OPENBLAS_NUM_THREADS=1), like kvtrace's
per-core figures; its mean retained mass must equal kvtrace's."""
import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # NumPy peers on one core, before numpy loads OpenBLAS

import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from synthetic import long_trace, trace_header, write_layer  # noqa: E402

KVTRACE, TRACE, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
SECTIONS = sys.argv[4:] or ["stories", "replay", "taskclock", "long", "peers", "error", "stored", "optimal", "threads",
                            "analyze", "e2e"]
LAYERS = int(os.environ.get("SIM_LAYERS", "2"))
E2E_T, E2E_LAYERS = int(os.environ.get("E2E_T", "32768")), int(os.environ.get("E2E_LAYERS", "2"))
ANALYZE_T = int(os.environ.get("ANALYZE_T", "32768"))
FOUR = ["h2o", "a2sf", "tova", "knorm"]
TEN = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv", "random"]
EIGHT_BUDGETS = "2%,5%,10%,20%,30%,40%,60%,80%"


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def timed(args):
    """Runs a command under /usr/bin/time -v: (wall s, user s, sys s, peak RSS MB)."""
    p = subprocess.run(["/usr/bin/time", "-v", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{p.stderr[-3000:]}")

    def field(name):
        return re.search(rf"{name}: (.*)", p.stderr).group(1).strip()
    wall = field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)").split(":")
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return seconds, float(field("User time \\(seconds\\)")), float(field("System time \\(seconds\\)")), \
        int(field("Maximum resident set size \\(kbytes\\)")) / 1024


def simulate(trace, *args, error_stride="0", env=None):
    """kvtrace simulate; returns its results' attributes and mean retained mass."""
    out = os.path.join(WORK, "bench-results.h5")
    for f in (out, out[:-3] + ".csv"):
        if os.path.exists(f):
            os.remove(f)
    extra = ["--error-stride", error_stride] if error_stride is not None else []
    subprocess.run([KVTRACE, "simulate", trace, *extra, *args, "-o", out], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    with h5py.File(out) as f:
        a = dict(f.attrs)
        a["mass"] = float(np.nanmean(f["metrics/retained_mass"][:]))
    return a


def corename():
    """The kernel set OpenBLAS picked for this CPU (as kvtrace, linked to the same library, gets it)."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def per_core(a):
    """(replay alone, with attention) in G entries/s per core."""
    e = a["entries"]
    return e / a["cpu_seconds_replay"] / 1e9, e / (a["cpu_seconds_replay"] + a["cpu_seconds_attention"]) / 1e9


# ---------------------------------------------------------------- traces

def synthetic_trace(path, layers, T=4096, H=32, d=128):
    """Llama-2-7B-shaped attention: 32 heads, head size 128, 4096 tokens.
    Logits q.k/sqrt(d) are about N(0, 1), plus a sink direction shared by the
    first four keys (+3.5) and a slowly drifting component shared by queries
    and keys (locality), so attention has heavy hitters and recency."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        s = trace_header(f, layers, T, H, d)
        for l in range(layers):
            write_layer(s, l, rng, T, H, d)


def first_sequence(trace):
    """A copy of the trace holding only its first sequence."""
    out = os.path.join(WORK, "first-sequence.h5")
    with h5py.File(trace) as src, h5py.File(out, "w") as dst:
        for key, v in src.attrs.items():
            dst.attrs[key] = v
        dst.attrs["n_sequences"] = 1
        src.copy("sequences/0000", dst, "sequences/0000")
    return out


def stored_trace(src_path, path, heads=4):
    """The first `heads` heads of layer 0 with their attention stored as the
    recorder stores it (64x64 chunks, shuffle, deflate level 1)."""
    with h5py.File(src_path) as src, h5py.File(path, "w") as f:
        for key, v in src.attrs.items():
            f.attrs[key] = v
        f.attrs["n_layers"], f.attrs["n_heads"], f.attrs["n_kv_heads"] = 1, heads, heads
        s = f.create_group("sequences/0000")
        for key, v in src["sequences/0000"].attrs.items():
            s.attrs[key] = v
        for n in ("tokens", "pieces", "nll"):
            src.copy(f"sequences/0000/{n}", s, n)
        g, sl = s.create_group("layers/000"), src["sequences/0000/layers/000"]
        for n in ("q", "k", "v", "k_norm", "v_norm_l1", "v_norm_l2"):
            g[n] = sl[n][:, :heads]
        q, k = sl["q"][:, :heads].astype(np.float32), sl["k"][:, :heads].astype(np.float32)
        T, d = q.shape[0], q.shape[2]
        att = g.create_dataset("attention", (heads, T, T), np.float32, chunks=(1, 64, 64), shuffle=True,
                               compression="gzip", compression_opts=1)
        for h in range(heads):
            logits = (q[:, h] @ k[:, h].T) / np.float32(np.sqrt(d))
            logits[np.triu_indices(T, 1)] = -np.inf
            a = np.exp(logits - logits.max(1, keepdims=True))
            att[h] = a / a.sum(1, keepdims=True)


def layer_arrays(trace, layer):
    with h5py.File(trace) as f:
        s = f["sequences/0000"]
        return s[f"layers/{layer:03d}/q"][:].astype(np.float32), s[f"layers/{layer:03d}/k"][:].astype(np.float32)


# ---------------------------------------------------------------- NumPy peers

def einsum_attention(qg, kt, t0, t1, d):
    """All units' rows t0..t1 at once with one einsum (the first peer)."""
    logits = np.einsum("tugd,udi->tugi", qg[t0:t1], kt[:, :, :t1]) / np.sqrt(d)  # [rows, KV, G, t1]
    logits += np.triu(np.full((t1 - t0, t1), -np.inf), t0 + 1)[:, None, None, :]
    att = np.exp(logits - logits.max(-1, keepdims=True))
    return att / att.sum(-1, keepdims=True)


def matmul_attention(qg, kt, t0, t1, d):
    """One matmul per head (BLAS sgemm), then the masked softmax vectorised."""
    rows, KV, G = t1 - t0, kt.shape[0], qg.shape[2]
    logits = np.empty((rows, KV, G, t1), np.float32)
    for u in range(KV):
        for g in range(G):
            np.matmul(qg[t0:t1, u, g], kt[u, :, :t1], out=logits[:, u, g])
    logits *= np.float32(1 / np.sqrt(d))
    logits += np.triu(np.full((rows, t1), -np.inf, np.float32), t0 + 1)[:, None, None, :]
    logits -= logits.max(-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(-1, keepdims=True)
    return logits


def numpy_h2o(q, k, budget, attention, recent=0.5, block=64):
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
        s = time.process_time()
        att = attention(qg, kt, t0, t1, d)
        t_att += time.process_time() - s
        s = time.process_time()
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
        t_replay += time.process_time() - s
    return entries, t_replay, t_att, mass_sum / rows


# ---------------------------------------------------------------- sections

def table(name, trace, policies, budget, threads=1):
    print(f"\n{name}: one thread, budget {budget}, output error off ({load()})")
    print(f"  {'policy':<8} {'entries':>12} {'replay G/s/core':>16} {'with attention':>15}")
    for p in policies:
        a = simulate(trace, "--policy", p, "--budget", budget, "--threads", str(threads))
        replay, with_attention = per_core(a)
        print(f"  {p:<8} {a['entries']:>12,d} {replay:>16.2f} {with_attention:>15.3f}")


def section_stories():
    table("stories260K traces (6 sequences, 5 layers x 4 kv heads, T ~ 230)", TRACE, FOUR, "20%")


def syn():
    path = os.path.join(WORK, "synthetic-7B.h5")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        synthetic_trace(path, LAYERS)
        print(f"\n[synthetic Llama-2-7B-shaped trace: {LAYERS} layers x 32 heads x 4096 tokens x 128, float16 q/k/v;"
              f" written in {time.perf_counter() - t0:.0f} s]")
    return path


def section_replay():
    table(f"synthetic 7B-shaped trace, {LAYERS} layers", syn(), FOUR, "20%")


def task_clock(trace, *args):
    """(task-clock ms of `kvtrace simulate` by perf stat, its results' attributes)."""
    out = os.path.join(WORK, "bench-results.h5")
    for f in (out, out[:-3] + ".csv"):
        if os.path.exists(f):
            os.remove(f)
    p = subprocess.run(["perf", "stat", "-x,", "-e", "task-clock", KVTRACE, "simulate", trace, "--error-stride", "0",
                        *args, "-o", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ms = float(next(line for line in p.stderr.splitlines() if "task-clock" in line).split(",")[0])
    with h5py.File(out) as f:
        return ms, dict(f.attrs)


def section_taskclock():
    """The replay's speed without kvtrace's own split of its CPU time: a run with 9 budgets (819..827 tokens)
    does the attention, loading and writing of a run with 1, so their task-clocks differ by 8 replays."""
    if subprocess.run(["perf", "stat", "true"], capture_output=True).returncode != 0:
        print("\n  taskclock: skipped (perf stat does not run here)")
        return
    trace, nine = syn(), ",".join(str(b) for b in range(819, 828))
    print(f"\nsynthetic 7B-shaped trace, {LAYERS} layers: replay by perf stat task-clock, 9 budgets less 1, one thread "
          f"({load()})")
    for p in FOUR:
        ms1, a1 = task_clock(trace, "--policy", p, "--budget", "819", "--threads", "1")
        ms9, a9 = task_clock(trace, "--policy", p, "--budget", nine, "--threads", "1")
        rate = (a9["entries"] - a1["entries"]) / ((ms9 - ms1) / 1e3) / 1e9
        print(f"  {p:<8} {rate:.2f} G entries/s per core   ({load()})")


def section_long():
    """The replay at E2E_T tokens: one unit (kv head 0 of one layer), 8 budgets, every policy of the
    end-to-end run (each policy's own figure: the end-to-end run shares the attention between them)."""
    path = os.path.join(WORK, f"long-{E2E_T}.h5")
    long_trace(path, 1, E2E_T)
    print(f"\n{E2E_T} tokens, one unit (layer 0, kv head 0), budgets {EIGHT_BUDGETS}, one thread, output error off "
          f"({load()})")
    print(f"  {'policy':<10} {'entries':>14} {'replay G/s/core':>16} {'with attention':>15}")
    for p in TEN:
        a = simulate(path, "--policy", p, "--budget", EIGHT_BUDGETS, "--heads", "0", "--threads", "1")
        replay, with_attention = per_core(a)
        print(f"  {p:<10} {a['entries']:>14,d} {replay:>16.2f} {with_attention:>15.3f}   ({load()})")
    # OpenBLAS's kernel: Debian 12's 0.3.21 runs its AVX2 (Haswell) one on AMD Zen 4, which has AVX-512
    if "avx512f" in open("/proc/cpuinfo").read():
        seconds = {}
        for core in ("default", "SkylakeX"):
            env = dict(os.environ, **({} if core == "default" else {"OPENBLAS_CORETYPE": core}))
            seconds[core] = min(simulate(path, "--policy", "full", "--budget", "50%", "--heads", "0", "--threads", "1",
                                         env=env)["cpu_seconds_attention"] for _ in range(2))
        print(f"  attention of the unit, OpenBLAS's default kernel ({corename()}): {seconds['default']:.2f} s; "
              f"OPENBLAS_CORETYPE=SkylakeX: {seconds['SkylakeX']:.2f} s "
              f"({seconds['default'] / seconds['SkylakeX']:.2f}x)   ({load()})")
    # one head of the long layer: only its kv head is read, the heatmap is drawn in cells
    out = os.path.join(WORK, "one-head.h5")
    wall, _, _, rss = timed([KVTRACE, "simulate", path, "--policy", "h2o", "--budget", "20%", "--heads", "0",
                             "--threads", "1", "-o", out])
    print(f"  simulate --heads 0 (h2o, 20 %): {wall:.1f} s wall, peak RSS {rss:.0f} MB "
          f"(reads 1 of the layer's 32 kv heads)   ({load()})")
    figures = os.path.join(WORK, "heatmap-long")
    wall, _, _, rss = timed([KVTRACE, "plot", path, "--figure", "heatmap", "--layer", "0", "--head", "0",
                             "-o", figures])
    print(f"  plot --figure heatmap (head 0): {wall:.1f} s wall, peak RSS {rss:.0f} MB "
          f"({-(-E2E_T // 1024)} x {-(-E2E_T // 1024)}-token cells; "
          f"the T x T matrix would be {E2E_T ** 2 * 4 / 2 ** 30:.0f} GB)   ({load()})")
    shutil.rmtree(figures)
    # a retention map at this length (1 GiB: a byte per step and token) and its figure, drawn in cells
    maps = os.path.join(WORK, "retention-long.h5")
    simulate_wall, _, _, _ = timed([KVTRACE, "simulate", path, "--policy", "h2o", "--budget", "10%", "--heads", "0",
                                    "--retention", "0:0", "--threads", "1", "-o", maps])
    wall, _, _, rss = timed([KVTRACE, "plot", maps, "--figure", "retention", "-o", figures])
    print(f"  simulate --retention 0:0 (h2o, 10 %, head 0): {simulate_wall:.1f} s wall; plot --figure retention: "
          f"{wall:.1f} s wall, peak RSS {rss:.0f} MB (a {E2E_T ** 2 / 2 ** 30:.0f} GiB map)   ({load()})")
    shutil.rmtree(figures)
    os.remove(maps)
    os.remove(maps[:-3] + ".csv")
    analysis = os.path.join(WORK, "two-heads.h5")
    wall, user, sys_, rss = timed([KVTRACE, "analyze", path, "--heads", "0,1", "--threads", "2", "-o", analysis])
    print(f"  analyze --heads 0,1 --threads 2: {wall:.1f} s wall, {user + sys_:.0f} s CPU, peak RSS {rss:.0f} MB "
          f"(2 of the layer's 32 heads)   ({load()})")
    for f in (path, out, out[:-3] + ".csv", analysis, analysis[:-3] + ".csv"):
        os.remove(f)


def section_peers():
    trace = first_sequence(syn())
    with h5py.File(trace) as f:
        T = f["sequences/0000/tokens"].shape[0]
    budget = max(1, int(np.floor(0.2 * T + 0.5)))
    q, k = layer_arrays(trace, 0)
    a = simulate(trace, "--policy", "h2o", "--budget", str(budget), "--threads", "1", "--layers", "0")
    replay, with_attention = per_core(a)
    print(f"\n  H2O, layer 0 (32 units x 4096 tokens), budget {budget}, one thread ({load()})")
    print(f"    kvtrace: replay {replay:.2f} G entries/s, with attention {with_attention:.3f} G entries/s"
          f" (attention {a['cpu_seconds_attention']:.2f} s, replay {a['cpu_seconds_replay']:.2f} s CPU)")
    for name, attention in (("per-head matmul", matmul_attention), ("einsum", einsum_attention)):
        e, t_replay, t_att, mass = numpy_h2o(q, k, budget, attention)
        print(f"    NumPy ({name} attention): replay {e / t_replay / 1e9:.3f}, with attention "
              f"{e / (t_replay + t_att) / 1e9:.4f} G entries/s (attention {t_att:.1f} s, replay {t_replay:.1f} s);"
              f" mass {mass:.6f} vs kvtrace {a['mass']:.6f}")
        print(f"      ratios vs this peer: replay {replay / (e / t_replay / 1e9):.1f}x, with attention "
              f"{with_attention / (e / (t_replay + t_att) / 1e9):.1f}x   ({load()})")


def cpu(a):
    return a["cpu_seconds_replay"] + a["cpu_seconds_attention"]


def section_error():
    trace = syn()
    print(f"\n  output error and ideal overlap: CPU seconds against error off, layer 0 ({load()})")
    for label, args in (("h2o 20%, 8 units", ["--policy", "h2o", "--budget", "20%", "--heads", "0,1,2,3,4,5,6,7"]),
                        ("10 policies x 8 budgets, 8 units",
                         sum([["--policy", p] for p in TEN], []) + ["--budget", EIGHT_BUDGETS, "--heads",
                                                                     "0,1,2,3,4,5,6,7"])):
        base = simulate(trace, *args, "--threads", "1", "--layers", "0", error_stride="0")
        default = simulate(trace, *args, "--threads", "1", "--layers", "0", error_stride=None)
        exact = simulate(trace, *args, "--threads", "1", "--layers", "0", error_stride="1")
        print(f"    {label}: off {cpu(base):.2f} s; default (every {default['error_stride']}th of 4096 rows) "
              f"{cpu(default) / cpu(base):.2f}x; every row {cpu(exact) / cpu(base):.2f}x   ({load()})")


def section_stored():
    path = os.path.join(WORK, "stored-attention.h5")
    stored_trace(syn(), path)
    print(f"\n  stored attention: 4 heads x 4096 tokens (64x64 chunks, deflate 1), h2o 20%, one thread ({load()})")
    results = {}
    for label, args in (("auto (default)", []), ("--attention stored", ["--attention", "stored"]),
                        ("--recompute", ["--recompute"])):
        a = simulate(path, "--policy", "h2o", "--budget", "20%", "--threads", "1", *args)
        results[label] = a
        print(f"    {label:<20} attention {a['cpu_seconds_attention']:.2f} s CPU, wall {a['seconds']:.2f} s, "
              f"mass {a['mass']:.7f}")
    print(f"    auto / recompute time: {cpu(results['auto (default)']) / cpu(results['--recompute']):.2f}x; "
          f"reading the stored rows costs {cpu(results['--attention stored']) / cpu(results['--recompute']):.1f}x "
          f"recomputing them   ({load()})")


def section_optimal():
    trace = syn()
    print(f"\n  optimal: one unit (layer 0, kv head 0) of 4096 tokens, one thread, /usr/bin/time -v ({load()})")
    for budget in ("5%", "20%", "50%"):
        out = os.path.join(WORK, "optimal.h5")
        if os.path.exists(out):
            os.remove(out)
        wall, user, sys_, rss = timed([KVTRACE, "simulate", trace, "--policy", "optimal", "--budget", budget,
                                       "--layers", "0", "--heads", "0", "--threads", "1", "--error-stride", "0",
                                       "-o", out])
        print(f"    budget {budget:>3}: {wall:.1f} s wall, {user:.1f} s user, peak RSS {rss:.0f} MB "
              f"(the layer's q, k, v alone: 200 MB)   ({load()})")


def section_threads():
    trace = syn()
    print(f"\n  threads: wall clock for 1 and 2 threads ({os.cpu_count()} cores)")
    args = ["--policy", "h2o", "--policy", "a2sf", "--policy", "tova", "--policy", "knorm", "--budget", "10%,20%"]
    walls = {}
    for threads in (1, 2):
        out = os.path.join(WORK, "threads.h5")
        for f in (out, out[:-3] + ".csv"):
            if os.path.exists(f):
                os.remove(f)
        walls[threads] = timed([KVTRACE, "simulate", trace, *args, "--error-stride", "0", "--threads", threads,
                                "-o", out])[0]
    print(f"    simulate ({LAYERS} layers, h2o a2sf tova knorm x 10% 20%): 1 thread {walls[1]:.1f} s, "
          f"2 threads {walls[2]:.1f} s:"
          f" {walls[1] / walls[2]:.2f}x   ({load()})")
    for threads in (1, 2):
        out = os.path.join(WORK, "threads-analysis.h5")
        for f in (out, out[:-3] + ".csv"):
            if os.path.exists(f):
                os.remove(f)
        walls[threads] = timed([KVTRACE, "analyze", first_sequence(trace), "--threads", threads, "-o", out],
                               )[0]
    print(f"    analyze ({LAYERS} layers x 32 heads, 1000 bootstrap replicates): 1 thread {walls[1]:.1f} s, "
          f"2 threads {walls[2]:.1f} s: {walls[1] / walls[2]:.2f}x   ({load()})")


def section_analyze():
    path = os.path.join(WORK, f"analyze-{ANALYZE_T}.h5")
    t0 = time.perf_counter()
    long_trace(path, 1, ANALYZE_T, H=8)
    out = os.path.join(WORK, "analysis-long.h5")
    if os.path.exists(out):
        os.remove(out)
    print(f"\n  analyze: {ANALYZE_T} tokens x 8 heads x 128, 1 layer (written in {time.perf_counter() - t0:.0f} s), "
          f"2 threads, /usr/bin/time -v ({load()})")
    wall, user, sys_, rss = timed([KVTRACE, "analyze", path, "--threads", "2", "-o", out])
    print(f"    {wall:.0f} s wall, {user:.0f} s user, peak RSS {rss:.0f} MB "
          f"(one T x T float matrix would be {ANALYZE_T ** 2 * 4 / 2 ** 30:.1f} GB)   ({load()})")
    os.remove(path)


def section_e2e():
    path = os.path.join(WORK, f"e2e-{E2E_T}.h5")
    t0 = time.perf_counter()
    long_trace(path, E2E_LAYERS, E2E_T)
    out = os.path.join(WORK, "e2e-results.h5")
    print(f"\n  end to end: {E2E_LAYERS} layers of a 32-layer 7B-shaped trace, {E2E_T} tokens x 32 heads x 128, "
          f"float16 (written in {time.perf_counter() - t0:.0f} s); 10 policies x 8 budgets ({EIGHT_BUDGETS}), "
          f"output error on the default rows, 2 threads, /usr/bin/time -v ({load()})")
    args = [KVTRACE, "simulate", path, *sum([["--policy", p] for p in TEN], []), "--budget", EIGHT_BUDGETS,
            "--threads", "2", "-o", out]
    wall, user, sys_, rss = timed(args)
    with h5py.File(out) as f:
        a = dict(f.attrs)
    print(f"    {wall / 60:.2f} min wall, {user / 60:.2f} min user, peak RSS {rss:.0f} MB; "
          f"{a['entries'] / 1e9:.0f} G entries, attention {a['cpu_seconds_attention']:.0f} s CPU, "
          f"replay {a['cpu_seconds_replay']:.0f} s CPU (output error every {a['error_stride']}th row)"
          f"   ({load()})")
    print(f"    extrapolated to 32 layers (x{32 / E2E_LAYERS:g}): {wall * 32 / E2E_LAYERS / 60:.0f} min on 2 cores")
    for f in (path, out, out[:-3] + ".csv"):
        os.remove(f)


def main():
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"kvtrace simulate/optimal/analyze benchmark, {time.strftime('%Y-%m-%d %H:%M')}, commit {commit}, "
          f"{os.cpu_count()} cores, {load()}")
    print("(entries = cached tokens scored per step per cache unit; per-core figures are entries / thread CPU s)")
    for name in SECTIONS:
        globals()["section_" + name]()
    syn_path = os.path.join(WORK, "synthetic-7B.h5")
    if os.path.exists(syn_path):
        os.remove(syn_path)


main()
