"""The regression corpus (tests/corpus/): every input that once crashed, hung
or misled kvtrace under fuzzing and fault injection, replayed through the
commands that read it.  Each run must end cleanly: exit 0, or exit 1/2/3
with one error line; never a signal, a sanitizer report or a hang.

Cases: `files` runs every corpus file through record (models) or
info/simulate/analyze/plot (HDF5 files); the other cases replay the
command-line findings whose input is the command itself."""
import glob
import os
import subprocess
import sys

from helpers import KVTRACE, MODEL, main, workdir

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
TRACE = os.path.join(HERE, "..", "traces", "stories260K.h5")
LIMIT_S = 60  # far above any clean run; a hang is what this catches
ENV = dict(os.environ, KVTRACE_H5_CHECK_SECONDS="10")


def clean_exit(args, stdin=None):
    """Runs kvtrace; asserts a clean ending and returns (code, stderr)."""
    try:
        p = subprocess.run([KVTRACE, *map(str, args)], capture_output=True, timeout=LIMIT_S, env=ENV,
                           input=stdin)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"kvtrace {' '.join(map(str, args))}: still running after {LIMIT_S} s (hang)")
    err = p.stderr.decode(errors="replace")
    what = f"kvtrace {' '.join(map(str, args))} -> {p.returncode}:\n{err[-3000:]}"
    assert p.returncode >= 0, "killed by a signal: " + what
    assert "Sanitizer" not in err and "runtime error" not in err and "HDF5-DIAG" not in err, what
    assert p.returncode in (0, 1, 2, 3), what
    if p.returncode in (1, 2):
        lines = [l for l in err.splitlines() if l.strip() and not l.startswith("kvtrace record: note:")]
        assert len(lines) == 1, "expected one error line: " + what
    print(f"{p.returncode}  {' '.join(map(str, args))[:110]}  {err.strip().splitlines()[-1][:140] if err.strip() else ''}")
    return p.returncode, err


def corpus_files(*patterns):
    out = []
    for pattern in patterns:
        out += sorted(glob.glob(os.path.join(CORPUS, "*", pattern)))
    return out


def files():
    d = workdir()
    for model in corpus_files("*.gguf", "*.bin"):
        out = os.path.join(d, "o.h5")
        for args in (["--prompt", "Once upon a time", "--generate", "5"], ["--tokens", "1,2", "--generate", "2"]):
            code, _ = clean_exit(["record", model, *args, "-o", out, "--force"])
            if code == 0:
                clean_exit(["info", out])
    for h5 in corpus_files("*.h5"):
        clean_exit(["info", h5])
        clean_exit(["simulate", h5, "--policy", "h2o", "--budget", "2", "--allow-incomplete", "-o",
                    os.path.join(d, "r.h5"), "--force"])
        clean_exit(["analyze", h5, "--bootstrap", "10", "--allow-incomplete", "-o", os.path.join(d, "a.h5"),
                    "--force"])
        clean_exit(["plot", h5, "--format", "dumb", "-o", os.path.join(d, "figs"), "--force"])


def long_output_path():
    """F06: a 1,100-character output path (no extension) is handled, not a stack overflow."""
    d = workdir()
    parts = [d] + [c * 200 for c in "defgh"] + ["i" * 120]
    folder = os.path.join(*parts)
    try:
        os.makedirs(folder)
    except OSError as e:  # a filesystem limit on name length: the point is kvtrace's buffers
        print("cannot create the folder:", e)
        folder = d
    out = os.path.join(folder, "out")
    code, _ = clean_exit(["simulate", TRACE, "--policy", "h2o", "--budget", "2", "-o", out])
    assert code == 0 and os.path.exists(out) and os.path.exists(out + ".csv")


def long_lists():
    """F11: lists are never cut at a fixed length: the 512th budget is 50 %, not 5 tokens."""
    import h5py
    d = workdir()
    budgets = "2," * 511 + "50%"
    out = os.path.join(d, "rb.h5")
    code, _ = clean_exit(["simulate", TRACE, "--policy", "window", "--budget", budgets, "--layers", "0", "-o", out])
    assert code == 0
    with h5py.File(out) as f:
        assert f["configs/budget"][-1].decode() == "50%", f["configs/budget"][-1]
        assert len(f["configs/budget"]) == 512
    alphas = ",".join(["0.1"] * 40)
    code, err = clean_exit(["analyze", TRACE, "--alpha", alphas, "-o", os.path.join(d, "a.h5")])
    assert code == 2 and "alpha" in err, err  # more alphas than allowed: said, not silently cut


def policy_parameter_overflow():
    """F19: a parameter beyond int range is refused, not wrapped into a negative index."""
    d = workdir()
    for policy in ("streaming:sink=3000000000", "vatp:sink=3000000000", "knorm:sink=3000000000",
                   "snapkv:window=2147483648", "snapkv:window=1000000000", "streaming:sink=1000000000"):
        code, err = clean_exit(["simulate", TRACE, "--policy", policy, "--budget", "20%", "-o",
                                os.path.join(d, "r.h5")])
        assert code in (1, 2) and ("sink" in err or "window" in err), err


def long_prompt():
    """F12: a 32 KB prompt is refused for the model's context quickly, not after a quadratic encoding."""
    import time
    d = workdir()
    prompt = os.path.join(d, "prompt_32000.txt")
    open(prompt, "w").write(("Once upon a time, there was a little girl named Lily. " * 600)[:32000])
    t0 = time.monotonic()
    code, err = clean_exit(["record", MODEL, "--prompt-file", prompt, "-o", os.path.join(d, "lp.h5")])
    print(f"{time.monotonic() - t0:.1f} s")
    assert code in (1, 2) and "context" in err, err


main({f.__name__: f for f in (files, long_output_path, long_lists, policy_parameter_overflow, long_prompt)})
