"""kvtrace simulate, analyze and eval under mpirun: 1, 2 and 3 ranks on this
machine write results identical, dataset by dataset and byte by byte, to a
single process's (only the attributes that record the time differ); a job
that fails stops the run on every rank count with one line and no results.

Skipped (exit 77, with the reason) when kvtrace was built without MPI or
mpirun is missing; scripts/install-deps installs Open MPI so CI runs them.

usage: test_mpi.py CASE"""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

from helpers import KVTRACE, MODEL, main, run, synthetic_trace, workdir

HERE = os.path.dirname(os.path.abspath(__file__))
STORIES = os.path.join(HERE, "..", "traces", "stories260K.h5")
TEXTS = os.path.join(HERE, "..", "texts", "stories.txt")
RANKS = (1, 2, 3)
# Attributes that record when and how long, never what was computed.
TIMING = {"created", "seconds", "cpu_seconds_attention", "cpu_seconds_replay"}
EVAL_FORMAT = "kvtrace-eval"  # an eval file's trace_sha256: see own_trace_digest
MPIRUN = os.environ.get("MPIRUN", "")
# Open MPI never frees what MPI_Init allocates, in plugins it unloads (so no
# suppression can name them): the leak checker is off under mpirun only.
# --oversubscribe: 3 ranks on 2 cores; --allow-run-as-root: CI runs as root.
MPI_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0"}


def need_mpi():
    if os.environ.get("KVTRACE_MPI") != "1":
        print("skipped: kvtrace was built without MPI (meson setup -Dmpi=enabled needs libopenmpi-dev)")
        sys.exit(77)
    if not MPIRUN:
        print("skipped: no mpirun (Debian: openmpi-bin)")
        sys.exit(77)


def mpirun(n, *args, cwd, env=None):
    full = dict(os.environ, **MPI_ENV, **(env or {}))
    cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(n), KVTRACE, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, cwd=cwd, env=full, timeout=240)


def single(*args, cwd, env=None):
    full = dict(os.environ, **(env or {}))
    return subprocess.run([KVTRACE, *map(str, args)], capture_output=True, cwd=cwd, env=full, timeout=240)


def contents(path):
    """Every dataset's bytes, dtype and shape, and every attribute but the timing ones."""
    out = {}

    def attrs(name, obj):
        for k, v in obj.attrs.items():
            if k not in TIMING and not (k == "trace_sha256" and EVAL_FORMAT in str(f.attrs.get("format", ""))):
                out[f"{name}@{k}"] = np.asarray(v).tobytes() if not isinstance(v, (str, bytes)) else v

    with h5py.File(path, "r") as f:
        attrs("/", f)

        def visit(name, obj):
            attrs(name, obj)
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = (str(obj.dtype), obj.shape,
                             np.asarray(data).tobytes() if obj.dtype.kind not in "OS" else repr(data))
        f.visititems(visit)
    return out


def own_trace_digest(path):
    """eval records its full-cache trace in the run, with the run's own `created` time, so the
    trace's sha256 differs from run to run (contents() leaves it out); it must be that of the
    trace the run wrote beside it."""
    with h5py.File(path, "r") as f:
        if not str(f.attrs.get("format", "")).startswith("kvtrace-eval"):
            return
        digest = f.attrs["trace_sha256"]
    with open(path[:-3] + "-trace.h5", "rb") as t:
        assert digest == hashlib.sha256(t.read()).hexdigest(), (path, digest)


def assert_same(reference, path, what):
    got = contents(path)
    assert reference.keys() == got.keys(), f"{what}: objects differ: {sorted(reference.keys() ^ got.keys())}"
    differ = [k for k in reference if reference[k] != got[k]]
    assert not differ, f"{what}: {len(differ)} datasets or attributes differ from one process's, e.g. {differ[:5]}"
    datasets = sum(1 for k in reference if "@" not in k)
    print(f"{what}: {datasets} datasets identical")


def identical_runs(command, args, outputs):
    """The command alone, then under mpirun -np 1, 2, 3, each in a directory
    of its own (same relative names, so the recorded command matches)."""
    need_mpi()
    base = workdir()
    ref_dir = os.path.join(base, "single")
    os.makedirs(ref_dir)
    p = single(command, *args, cwd=ref_dir)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    refs = {o: contents(os.path.join(ref_dir, o)) for o in outputs}
    for o in outputs:
        own_trace_digest(os.path.join(ref_dir, o))
    for n in RANKS:
        d = os.path.join(base, f"np{n}")
        os.makedirs(d)
        p = mpirun(n, command, *args, cwd=d, env={"KVTRACE_PROGRESS": "1"})
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0, f"-np {n}: {err}"
        assert "Sanitizer" not in err and "runtime error" not in err, err
        # rank 0's progress line over every rank's jobs (drawn when asked: stderr is a pipe here)
        last = [part for part in err.split("\r") if " jobs, " in part][-1]
        done, total = re.search(r"(\d+)/(\d+) jobs, .* ETA", last).groups()
        assert done == total, last
        for o in outputs:
            assert_same(refs[o], os.path.join(d, o), f"{command} -np {n} {o}")
            own_trace_digest(os.path.join(d, o))
        for o in outputs:  # the CSVs too
            csv = o[:-3] + ".csv"
            if os.path.exists(os.path.join(ref_dir, csv)):
                with open(os.path.join(ref_dir, csv), "rb") as a, open(os.path.join(d, csv), "rb") as b:
                    assert a.read() == b.read(), f"-np {n}: {csv} differs"
    shutil.rmtree(base)


def synthetic(layers=2, T=400):
    d = workdir()
    return synthetic_trace(os.path.join(d, "synthetic.h5"), T=T, H=4, KV=2, d=16, layers=layers, n_prompt=64)


def simulate_stories():
    """60 jobs of (sequence, layer) over 3 ranks, with retention maps."""
    identical_runs("simulate", [STORIES, "--policy", "h2o", "--policy", "a2sf", "--policy", "tova", "--policy",
                                "window", "--budget", "40%,60%", "--retention", "2:0", "--threads", "1",
                                "-o", "results.h5"], ["results.h5"])


def simulate_synthetic():
    """One sequence of two layers: fewer jobs than 3 ranks, so jobs are kv heads."""
    identical_runs("simulate", [synthetic(), "--budget", "10%,30%", "--threads", "1", "--retention", "1:1",
                                "-o", "results.h5"], ["results.h5"])


def simulate_allocations():
    """Adaptive allocation replays a layer's kv heads together: with fewer jobs than ranks the
    jobs stay whole layers instead of kv heads, and the results are still identical."""
    identical_runs("simulate", [synthetic(), "--budget", "10%,30%", "--threads", "1", "--policy", "h2o",
                                "--policy", "tova", "--allocation", "uniform", "--allocation", "adaptive",
                                "--allocation", "pyramid", "-o", "results.h5"], ["results.h5"])


def analyze_stories():
    identical_runs("analyze", [STORIES, "--bootstrap", "40", "--threads", "1", "-o", "analysis.h5"],
                   ["analysis.h5"])


def analyze_synthetic():
    """Two threads per rank: the bootstrap stream split by head inside a job, and across jobs by rank 0."""
    identical_runs("analyze", [synthetic(layers=3), "--bootstrap", "20", "--threads", "2", "--example", "1:2",
                               "-o", "analysis.h5"], ["analysis.h5"])


def analyze_subset():
    """--layers/--heads: jobs are the analysed layers only, and rank 0 moves the bootstrap stream past the
    others (between jobs and sequences) as one process does."""
    identical_runs("analyze", [STORIES, "--bootstrap", "40", "--threads", "2", "--layers", "3,1", "--heads", "2,5",
                               "-o", "analysis.h5"], ["analysis.h5"])


def eval_stories():
    """Two texts: at 3 ranks the jobs are (text, configuration)."""
    need_mpi()
    d = workdir()
    texts = os.path.join(d, "two.txt")
    with open(TEXTS) as src, open(texts, "w") as dst:
        dst.writelines(src.readlines()[:2])
    identical_runs("eval", [MODEL, "--text-file", texts, "--policy", "h2o", "--policy", "window", "--budget",
                            "30%,60%", "--retention", "1:0", "--threads", "1", "-o", "eval.h5"],
                   ["eval.h5", "eval-trace.h5"])


def damaged_copy(src, dst, sequence, layer):
    """A trace whose q chunk of one layer is overwritten: it opens, and fails when that layer is read."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r") as f:
        info = f[f"sequences/{sequence:04d}/layers/{layer:03d}/q"].id.get_chunk_info(0)
    with open(dst, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


def failures():
    """A truncated trace among several, and a damaged layer found only by a job
    (the open-time check switched off): every rank count fails with exit 1,
    our one line once (from rank 0) naming the rank, and no results file."""
    need_mpi()
    d = workdir()
    good = os.path.join(d, "good.h5")
    shutil.copy(STORIES, good)
    with open(STORIES, "rb") as fh, open(os.path.join(d, "truncated.h5"), "wb") as out:
        out.write(fh.read(60000))
    damaged_copy(STORIES, os.path.join(d, "damaged.h5"), 1, 3)
    cases = [("truncated.h5", {}, "rank 0, checking the inputs and outputs: truncated.h5: HDF5 cannot open the trace"),
             ("damaged.h5", {"KVTRACE_H5_CHECK": "off"}, "(damaged.h5 sequence 1 layer 3): damaged.h5: cannot read")]
    for bad, env, expected in cases:
        for n in RANKS:
            p = mpirun(n, "simulate", "good.h5", bad, "good.h5", "--policy", "h2o", "--budget", "40%", "--threads", "1",
                       "-o", "results.h5", cwd=d, env=env)
            err = p.stderr.decode(errors="replace")
            ours = [l for l in err.splitlines() if l.startswith("kvtrace")]
            assert p.returncode != 0, f"-np {n} {bad}: succeeded"
            assert "Sanitizer" not in err and "runtime error" not in err, err
            assert len(ours) == 1, f"-np {n} {bad}: expected one line from kvtrace:\n{err}"
            assert ours[0].startswith("kvtrace simulate: rank ") and expected in ours[0], ours[0]
            if bad == "damaged.h5":  # the job that read it: (good.h5's 6 sequences + 1) x 5 layers + 3
                assert re.match(r"kvtrace simulate: rank [0-2], job 38 of 90 \(", ours[0]), ours[0]
            leftovers = [f for f in os.listdir(d) if f.startswith("results")]
            assert not leftovers, f"-np {n} {bad}: left {leftovers}"
            print(f"-np {n} {bad}: {ours[0]}")
    # the single process names the failure as before, without ranks
    p = single("simulate", "good.h5", "damaged.h5", "--policy", "h2o", "--budget", "40%", "-o", "results.h5",
               cwd=d, env={"KVTRACE_H5_CHECK": "off"})
    line = p.stderr.decode(errors="replace").strip()
    assert p.returncode == 1 and "rank" not in line and "damaged.h5 sequence 1 layer 3" in line, line
    shutil.rmtree(d)


def other_commands_refuse():
    """Commands that do not spread their work (record, info, plot, demo, tokenize) refuse more than one
    rank in one line, rather than racing N copies for the same outputs; with one rank they run."""
    need_mpi()
    d = workdir()
    p = mpirun(2, "record", MODEL, "--prompt", "Once", "--generate", "4", "-o", "t.h5", cwd=d)
    ours = [l for l in p.stderr.decode(errors="replace").splitlines() if l.startswith("kvtrace")]
    assert p.returncode != 0 and len(ours) == 1 and "does not run under mpirun with 2 ranks" in ours[0], ours
    assert not os.listdir(d), os.listdir(d)
    p = mpirun(1, "info", STORIES, cwd=d)
    assert p.returncode == 0 and b"kvtrace-trace/1" in p.stdout, p.stderr
    print(ours[0])


def without_mpi_says_so():
    """A kvtrace built without MPI, started by a launcher (its variables set),
    refuses in one line instead of running N copies of the whole job."""
    if os.environ.get("KVTRACE_MPI") == "1":
        print("skipped: this kvtrace has MPI built in (the case is for builds without it)")
        sys.exit(77)
    d = workdir()
    for rank in ("0", "1"):
        p = single("simulate", STORIES, "-o", "results.h5", cwd=d,
                   env={"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": rank})
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 1, err
        lines = err.splitlines()
        assert len(lines) == (1 if rank == "0" else 0), err
        if lines:
            assert "built without MPI support" in lines[0] and "OMPI_COMM_WORLD_SIZE" in lines[0], lines[0]
            print(lines[0])
    assert not os.path.exists(os.path.join(d, "results.h5"))


if __name__ == "__main__":
    main(dict(simulate_stories=simulate_stories, simulate_synthetic=simulate_synthetic,
              simulate_allocations=simulate_allocations,
              analyze_stories=analyze_stories, analyze_synthetic=analyze_synthetic,
              analyze_subset=analyze_subset, eval_stories=eval_stories,
              failures=failures, other_commands_refuse=other_commands_refuse,
              without_mpi_says_so=without_mpi_says_so))
