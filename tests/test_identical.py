"""Every optimisation keeps the numbers: `simulate` and `analyze` results on
the committed traces and on a synthetic long trace must equal the reference
files in tests/reference/ within 1e-6 (eviction ages and retention maps
exactly).  The references were written by the code before the speed work of
issue 12 (commit named in each file's `made_by` attribute) with

    KVTRACE_COMMIT=OLD_COMMIT /usr/bin/python3 tests/test_identical.py --make OLD_KVTRACE [CASE...]

from its release build, and again from its sanitizer build (`--make-sanitized`;
scripts/test's build type) into NAME.sanitized.h5: the instrumented softmax
kernel sums in another order (1 ulp), which flips near-tied evictions and
ranks (1e-5 in a mass curve, 1e-4 in a Spearman), so each build is compared
with the code before it built the same way.

OpenBLAS picks its matrix kernel by CPU (SkylakeX on recent Intel, Zen on
AMD...), and the kernels round attention scores differently in the last bit;
that moves near-tied evictions and ranks just as the sanitizer build does.
So references and comparisons both run OpenBLAS's Haswell kernel
(OPENBLAS_CORETYPE=Haswell, set below), which every AVX2 machine runs; on a
machine without AVX2 the test is skipped.

usage: test_identical.py CASE"""
import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "reference")
STORIES = os.path.join(HERE, "..", "traces", "stories260K.h5")
ALL = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv:window=4", "random",
       "ideal", "optimal"]


def policies(names):
    return sum([["--policy", p] for p in names], [])


# case -> (trace ("stories" or "long"), command, arguments)
CASES = {
    "stories_streaming": ("stories", "simulate", policies(ALL) + ["--budget", "10%,25%,60%", "--error-stride", "1"]),
    "stories_prefill": ("stories", "simulate",
                        ["--prefill", "--budget", "50%,80%", "--error-stride", "2"] +
                        policies(["h2o", "snapkv:window=4", "knorm", "ideal", "optimal", "a2sf", "tova", "streaming"])),
    "stories_layer": ("stories", "simulate", ["--granularity", "layer", "--budget", "20%,40%", "--error-stride", "3"] +
                      policies(["h2o", "a2sf", "ideal", "vatp", "tova", "window", "optimal"])),
    "stories_retention": ("stories", "simulate", ["--retention", "2:1", "--budget", "20%", "--error-stride", "1"] +
                          policies(["h2o", "a2sf:alpha=0.5", "optimal", "ideal", "knorm"])),
    "long_streaming": ("long", "simulate", policies([p for p in ALL if p != "optimal"] + ["snapkv"]) +
                       ["--budget", "5%,20%,70%", "--error-stride", "4"]),
    "long_exact_error": ("long", "simulate", policies(["h2o", "tova", "ideal"]) +
                         ["--budget", "15%", "--error-stride", "1"]),
    "long_optimal": ("long", "simulate", ["--policy", "optimal", "--policy", "h2o", "--budget", "64,10%",
                                          "--error-stride", "0", "--heads", "1"]),
    "long_prefill": ("long", "simulate", ["--prefill", "--budget", "50%", "--error-stride", "1"] +  # the default then
                     policies(["h2o", "a2sf", "tova", "snapkv", "knorm", "ideal", "optimal"])),
    "analyze_stories": ("stories", "analyze", ["--bootstrap", "100"]),
    "analyze_long": ("long", "analyze", ["--bootstrap", "30", "--example", "0:1"]),
}
SIMULATE_KEYS = ["metrics/retained_mass", "metrics/attention_kl", "metrics/output_error", "metrics/ideal_overlap",
                 "eviction_age", "curve_retained_mass", "retention", "configs/budget_tokens"]


def long_trace(workdir):
    from helpers import synthetic_trace
    path = os.path.join(workdir, "long.h5")
    if not os.path.exists(path):
        synthetic_trace(path)
    return path


def run_case(kvtrace, name, workdir):
    import subprocess
    which, command, args = CASES[name]
    trace = STORIES if which == "stories" else long_trace(workdir)
    out = os.path.join(workdir, name + ".h5")
    if os.path.exists(out):
        os.remove(out)
    extra = ["--threads", "2"] if command == "simulate" else []
    p = subprocess.run([kvtrace, command, trace, *args, *extra, "-o", out], capture_output=True)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return out


def numeric_datasets(f):
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu":
            found[name] = obj[()]
    f.visititems(visit)
    return found


def datasets_of(path, command):
    with h5py.File(path) as f:
        if command == "analyze":
            return numeric_datasets(f)
        return {k: f[k][()] for k in SIMULATE_KEYS if k in f}


def sanitized(kvtrace):
    with open(kvtrace, "rb") as fh:
        return b"libasan.so" in fh.read()


def reference_path(name, kvtrace):
    path = os.path.join(REFERENCE, name + ".sanitized.h5")
    return path if sanitized(kvtrace) and os.path.exists(path) else os.path.join(REFERENCE, name + ".h5")


def make(kvtrace, suffix=""):
    import subprocess
    import tempfile
    made_by = os.environ.get("KVTRACE_COMMIT") or subprocess.run(["git", "-C", HERE, "rev-parse", "HEAD"],
                                                                 capture_output=True, text=True).stdout.strip()
    os.makedirs(REFERENCE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kvtrace-reference-")
    for name in sys.argv[3:] or CASES:
        out = run_case(kvtrace, name, work)
        with h5py.File(os.path.join(REFERENCE, name + suffix + ".h5"), "w") as ref:
            ref.attrs["made_by"] = made_by
            ref.attrs["args"] = " ".join(CASES[name][2])
            for key, value in datasets_of(out, CASES[name][1]).items():
                ref.create_dataset(key, data=value, compression="gzip", shuffle=True)
        print(name, "written")


# An optimal schedule is unique only up to tokens whose remaining attention is
# negligible (stories260K's peaked heads leave many at ~1e-10): every optimal
# schedule retains the same mass, KL and output error, but the solver written
# for issue 12 may evict those tokens in another order than the reference's.
# So `optimal`'s eviction ages, ideal overlap and retention map are compared
# only as far as that freedom allows: its mass must match (it is the optimum).
SCHEDULE_DEPENDENT = ("eviction_age", "metrics/ideal_overlap", "retention")

# Datasets added after the references were written (the age-bias figure's
# shares, issue 13): they have no reference value here and are checked by
# test_plot.py (age_bias_stories); any other difference in the set fails.
ADDED_SINCE_REFERENCE = {"top_b/age_share", "top_b/age_share_pooled"}


def without_optimal(name, out, got, want):
    with h5py.File(out) as f:
        optimal = np.array([p.decode() == "optimal" for p in f["configs/policy"][:]]) if "configs/policy" in f else None
    if optimal is None or not optimal.any():
        return
    for key in SCHEDULE_DEPENDENT:
        if key in want:
            got[key] = np.asarray(got[key])[~optimal]
            want[key] = np.asarray(want[key])[~optimal]


def tolerance(key):
    """Issue 12's streamed analysis sums each token's accumulated attention
    in another order than the code before it (rows in blocks, not whole): the
    sums agree to 1e-7, but a rank statistic over near-tied sums can move by
    a swapped pair, 8e-5 at most in one bootstrap bound of stories260K's age
    Spearman.  Spearman values get 2e-4 (a real error moves them by 1e-2 or
    more); everything else 1e-6."""
    return 2e-4 if "spearman" in key else 1e-6


def compare(name):
    from helpers import KVTRACE, workdir
    out = run_case(KVTRACE, name, workdir())
    got = datasets_of(out, CASES[name][1])
    with h5py.File(reference_path(name, KVTRACE)) as ref:
        want = {k: ref[k][()] for k in numeric_datasets(ref)}
    without_optimal(name, out, got, want)
    for key in ADDED_SINCE_REFERENCE - set(want):
        got.pop(key, None)
    assert sorted(got) == sorted(want), (sorted(set(got) ^ set(want)))
    for key in want:
        a, b = np.asarray(got[key]), np.asarray(want[key])
        assert a.shape == b.shape, (key, a.shape, b.shape)
        if b.dtype.kind in "iu" or key in ("retention",):
            assert np.array_equal(a, b), (key, np.argwhere(a != b)[:5])
            continue
        assert np.array_equal(np.isnan(a), np.isnan(b)), (key, "NaN pattern differs")
        scale = np.maximum(1.0, np.abs(b))  # 1e-6, relative for large values (sums over thousands of rows)
        diff = np.nanmax(np.abs(a - b) / scale) if a.size and not np.isnan(a).all() else 0.0
        assert diff <= tolerance(key), (key, diff)
        print(f"{key}: max difference {diff:.2e}")


def pin_blas_kernel():
    with open("/proc/cpuinfo") as f:
        if " avx2" not in f.read():
            print("skipped: the references need OpenBLAS's Haswell kernel, which needs AVX2")
            sys.exit(77)
    os.environ["OPENBLAS_CORETYPE"] = "Haswell"


if __name__ == "__main__":
    pin_blas_kernel()
    if sys.argv[1] in ("--make", "--make-sanitized"):
        make(sys.argv[2], ".sanitized" if sys.argv[1] == "--make-sanitized" else "")
    else:
        sys.path.insert(0, HERE)
        compare(sys.argv[1])
        print(f"{sys.argv[1]}: ok")
