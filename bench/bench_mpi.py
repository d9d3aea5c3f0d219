"""Scaling of `mpirun -np N kvtrace simulate` (a benchmark, not a test).

usage: bench_mpi.py KVTRACE WORKDIR

Strong scaling on this machine: one synthetic 7B-shaped trace (2 sequences x
8 layers of 2048 tokens, 32 heads of 128, float16), 4 policies x 2 budgets,
one thread per rank, replayed by one process and by mpirun -np 1 and 2 (and
one process with 2 threads, for comparison); each result file must equal the
single process's.

Weak scaling to 64 ranks is estimated, not measured: the -np 1 run's
KVTRACE_DIST_STATS gives every job's compute time (CPU seconds: what it
takes on an idle core), its fold-in time on rank 0 and its message sizes; a
discrete-event model replays the same jobs, 8 per rank, on 64 ranks that ask
rank 0 for work as this code does (rank 0's main thread serves one message at
a time: the transfer at the link's bandwidth plus latency, then the fold-in),
for two networks.  The model leaves out what one machine cannot
show: a shared file system slowing as 64 ranks read traces at once."""
import heapq
import os
import resource
import subprocess
import sys
import time

import h5py
import numpy as np

from synthetic import write_layer

KVTRACE, WORK = os.path.abspath(sys.argv[1]), sys.argv[2]
SEQUENCES, LAYERS, T, H, D = 2, 8, 2048, 32, 128
ARGS = ["--policy", "h2o", "--policy", "a2sf", "--policy", "tova", "--policy", "knorm", "--budget", "10%,20%"]
# --bind-to none: Open MPI binds each of 2 ranks to one core, which on a shared machine can starve one
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-x", "KVTRACE_DIST_STATS"]
NETWORKS = [("10 GbE: 1.2 GB/s, 50 us", 1.2e9, 50e-6), ("InfiniBand HDR: 20 GB/s, 2 us", 20e9, 2e-6)]
JOBS_PER_RANK = 8


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def write_trace(path):
    """bench/synthetic.py's 7B-shaped layers; every sequence its own draws."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for key, v in dict(format="kvtrace-trace/1", n_layers=LAYERS, n_heads=H, n_kv_heads=H, head_dim=D,
                           model_dim=H * D, vocab_size=32000, rope_theta=10000.0, complete=1,
                           model_sha256="synthetic-7B-shaped", model_name="synthetic").items():
            f.attrs[key] = v
        for s in range(SEQUENCES):
            g = f.create_group(f"sequences/{s:04d}")
            g.attrs["n_prompt"], g.attrs["complete"] = 1, 1
            g["tokens"], g["nll"] = np.zeros(T, np.int32), np.zeros(T, np.float32)
            g["pieces"] = np.array([b"x"] * T, dtype=h5py.string_dtype())
            for l in range(LAYERS):
                write_layer(g, l, rng, T, H, D)


def run(cmd, stats=None):
    """(wall s, CPU s of the command and its children: every rank that mpirun started here)."""
    env = dict(os.environ, KVTRACE_DIST_STATS=stats or os.devnull)
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, cwd=WORK, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic() - start, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()].tobytes()) if isinstance(o, h5py.Dataset)
                     and o.dtype.kind not in "OS" else None)
    return out


def read_stats(path):
    rows = [line.split("\t") for line in open(path) if line[0].isdigit()]
    return [(float(r[3]), float(r[4]), int(r[5]), int(r[6])) for r in rows]  # CPU, reduce, input, result


def model(jobs, ranks, bandwidth, latency):
    """Makespan of `jobs` [(run_s, reduce_s, input_bytes, result_bytes)] on `ranks` ranks, event
    by event, as util/dist.c schedules them: a rank that finishes a job sends its result and asks
    for the next; rank 0's main thread takes one message at a time (its link moves the result and
    the reply's input at `bandwidth`, each way after `latency`) and folds each result in (in job
    order; here as it arrives); rank 0's second thread runs jobs, taking the next one directly."""
    events = [(0.0, r, None) for r in range(1, ranks)]  # (when a message reaches rank 0, from rank, job done)
    heapq.heapify(events)
    next_job, server_free, local_free = 0, 0.0, 0.0
    while events or next_job < len(jobs):
        if next_job < len(jobs) and (not events or local_free < events[0][0]):  # rank 0's own thread
            local_free += jobs[next_job][0]
            heapq.heappush(events, (local_free, 0, next_job))
            next_job += 1
            continue
        t, r, done = heapq.heappop(events)
        server_free = max(t, server_free)
        if done is not None:
            server_free += (jobs[done][3] / bandwidth if r else 0) + jobs[done][1]
        if r and next_job < len(jobs):
            server_free += jobs[next_job][2] / bandwidth
            heapq.heappush(events, (server_free + 2 * latency + jobs[next_job][0], r, next_job))
            next_job += 1
    return max(server_free, local_free)


def main():
    os.makedirs(WORK, exist_ok=True)
    trace = os.path.join(WORK, "mpi-bench.h5")
    write_trace(trace)
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"mpirun -np N kvtrace simulate, {time.strftime('%Y-%m-%d %H:%M')}, commit {commit}, {os.cpu_count()} cores")
    print(f"trace: {SEQUENCES} sequences x {LAYERS} layers x {T} tokens, {H} heads x {D}; 4 policies x 2 budgets; "
          f"{SEQUENCES * LAYERS} jobs")
    base = [KVTRACE, "simulate", trace, *ARGS, "--force"]
    runs = [("one process, 1 thread", base + ["--threads", "1", "-o", "single.h5"], None),
            ("mpirun -np 1, 1 thread", MPIRUN + ["-np", "1"] + base + ["--threads", "1", "-o", "np1.h5"], "np1.tsv"),
            ("mpirun -np 2, 1 thread each", MPIRUN + ["-np", "2"] + base + ["--threads", "1", "-o", "np2.h5"],
             "np2.tsv"),
            ("one process, 2 threads", base + ["--threads", "2", "-o", "threads2.h5"], None)]
    times = {}
    print("| run | wall | speed-up | CPU (all ranks) | load before |\n|---|---|---|---|---|")
    for name, cmd, stats in runs:
        before = load()
        times[name], cpu = run(cmd, stats and os.path.join(WORK, stats))
        print(f"| {name} | {times[name]:.2f} s | {times['one process, 1 thread'] / times[name]:.2f}x | {cpu:.2f} s | "
              f"{before} |")
    reference = datasets(os.path.join(WORK, "single.h5"))
    for out in ("np1.h5", "np2.h5", "threads2.h5"):
        assert datasets(os.path.join(WORK, out)) == reference, f"{out} differs from one process's results"
    print("every result file equals the single process's, dataset by dataset")

    jobs = read_stats(os.path.join(WORK, "np1.tsv"))
    run_s = [j[0] for j in jobs]
    print(f"per job (np 1): compute {np.mean(run_s):.3f} CPU s mean ({min(run_s):.3f}-{max(run_s):.3f}), fold-in "
          f"{np.mean([j[1] for j in jobs]) * 1e3:.2f} ms, result {np.mean([j[3] for j in jobs]) / 1e6:.2f} MB, "
          f"input {np.mean([j[2] for j in jobs]):.0f} B")
    # strong scaling as it would be on two idle cores: the same jobs' CPU times on 1 and 2 ranks
    # (shared memory: ~5 GB/s, 1 us), beside what the -np 2 run's ranks each computed
    on_one, on_two = model(jobs, 1, 5e9, 1e-6), model(jobs, 2, 5e9, 1e-6)
    per_rank = {}
    for row in [line.split("\t") for line in open(os.path.join(WORK, "np2.tsv")) if line[0].isdigit()]:
        per_rank[row[1]] = per_rank.get(row[1], 0.0) + float(row[3])
    print(f"| 2 idle cores, modelled from the jobs' CPU times | {on_one:.2f} s -> {on_two:.2f} s | "
          f"{on_one / on_two:.2f}x | -np 2 run: " + ", ".join(f"rank {r} computed {t:.2f} CPU s"
                                                            for r, t in sorted(per_rank.items())) + " |")
    one_rank = model(jobs[:JOBS_PER_RANK], 1, 1e12, 0)
    for name, bandwidth, latency in NETWORKS:
        many = [jobs[i % len(jobs)] for i in range(64 * JOBS_PER_RANK)]
        t64 = model(many, 64, bandwidth, latency)
        busy = sum((j[2] + j[3]) / bandwidth + j[1] for j in many) / t64
        print(f"| 64 ranks, {JOBS_PER_RANK} jobs each, {name} | {t64:.2f} s vs {one_rank:.2f} s on 1 rank | "
              f"weak-scaling efficiency {one_rank / t64:.0%} | rank 0's main thread busy {busy:.0%} |")
    for f in ("mpi-bench.h5", "single.h5", "np1.h5", "np2.h5", "threads2.h5"):
        os.remove(os.path.join(WORK, f))


main()
