"""Shared helpers for the Python tests: paths, running kvtrace, and the
checks every failing command must pass (one-line error, non-zero exit,
no crash, no sanitizer report)."""
import os
import subprocess
import sys
import tempfile

KVTRACE = os.environ["KVTRACE"]
SHARED = os.environ["KVTRACE_SHARED"]
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
GOLDEN = os.path.join(SHARED, "reference", "stories260K-golden.h5")
GREEDY = os.path.join(SHARED, "reference", "stories260K-greedy200.txt")


def run(*args, env=None, check=True):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run([KVTRACE, *map(str, args)], capture_output=True, env=full_env)
    if check and p.returncode != 0:
        raise AssertionError(f"kvtrace {' '.join(map(str, args))} failed ({p.returncode}):\n"
                             f"{p.stderr.decode(errors='replace')}")
    return p


def expect_clean_failure(p, must_mention=None, codes=(1, 2)):
    """A bad input must give one error line, a small non-zero exit, no crash."""
    err = p.stderr.decode(errors="replace")
    assert p.returncode in codes, f"exit status {p.returncode}, stderr:\n{err}"
    assert "Sanitizer" not in err and "runtime error" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err}"
    if must_mention:
        assert must_mention in lines[0], f"error does not name {must_mention!r}: {lines[0]}"
    print("error line:", lines[0])
    return lines[0]


def workdir():
    return tempfile.mkdtemp(prefix="kvtrace-test-")


def main(cases):
    name = sys.argv[1]
    cases[name]()
    print(f"{name}: ok")
