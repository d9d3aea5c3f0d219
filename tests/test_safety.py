"""Data safety: kvtrace never destroys what it was not asked to replace.

An output that is an input is refused even with --force; an existing output
is refused without it; a failed, interrupted or killed run leaves the old
output byte for byte; a recording killed at any point reads back up to its
last flush; a reader opened during a recording sees a consistent prefix;
two recordings racing for one output cannot both claim it."""
import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np

from helpers import KVTRACE, MODEL, expect_clean_failure, main, run, workdir

HERE = os.path.dirname(os.path.abspath(__file__))
TRACE = os.path.join(HERE, "..", "traces", "stories260K.h5")
TEXTS = os.path.join(HERE, "..", "texts", "stories.txt")


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def visible(d):
    """Files a user sees in d (temporary files are hidden: .NAME.tmp-XXXXXX)."""
    return sorted(f for f in os.listdir(d) if not f.startswith("."))


def refused(args, mention=None):
    p = run(*args, check=False)
    line = expect_clean_failure(p)
    if mention:
        assert mention in line, (mention, line)
    return line


def output_is_input():
    """simulate X -o X, analyze X -o X, --csv X, record -o MODEL, eval --trace MODEL, a symlink, a hard link
    and a ./ spelling of an input: refused even with --force; every input byte-identical afterwards."""
    d = workdir()
    t = os.path.join(d, "t.h5")
    shutil.copy(TRACE, t)
    model = os.path.join(d, "m.gguf")
    shutil.copy(MODEL, model)
    os.symlink(t, os.path.join(d, "link.h5"))
    os.link(t, os.path.join(d, "hard.h5"))
    before = {p: digest(p) for p in (t, model)}
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for force in ([], ["--force"]):
            for out in ("t.h5", "./t.h5", "link.h5", "hard.h5", os.path.join(d, "..", os.path.basename(d), "t.h5")):
                refused(["simulate", "t.h5", "--policy", "h2o", "--budget", "4", "-o", out, *force], "same file")
                refused(["analyze", "t.h5", "-o", out, *force], "same file")
            refused(["simulate", "t.h5", "--policy", "h2o", "--budget", "4", "-o", "r.h5", "--csv", "t.h5", *force],
                    "same file")
            refused(["simulate", "t.h5", "--policy", "h2o", "--budget", "4", "-o", "r.h5", "--csv", "r.h5", *force],
                    "same file")
            refused(["record", "m.gguf", "--tokens", "1,2,3", "-o", "m.gguf", *force], "same file")
            refused(["record", "m.gguf", "--prompt-file", TEXTS, "-o", TEXTS, *force], "same file")
            refused(["eval", "m.gguf", "--text-file", TEXTS, "--trace", "m.gguf", "-o", "e.h5", *force], "same file")
            refused(["eval", "m.gguf", "--text-file", TEXTS, "-o", "m.gguf", *force], "same file")
    finally:
        os.chdir(cwd)
    assert {p: digest(p) for p in (t, model)} == before, "an input changed"
    assert visible(d) == ["hard.h5", "link.h5", "m.gguf", "t.h5"], visible(d)


def existing_output():
    """An existing output is refused without --force and left as it was; --force replaces it whole."""
    d = workdir()
    precious = b"precious bytes, not a kvtrace file"
    cases = {
        "r.h5": ["simulate", TRACE, "--policy", "h2o", "--budget", "4", "-o"],
        "a.h5": ["analyze", TRACE, "--bootstrap", "10", "-o"],
        "t.h5": ["record", MODEL, "--tokens", "1,403,407", "-o"],
        "e.h5": ["eval", MODEL, "--text-file", TEXTS, "--policy", "h2o", "--budget", "20%", "-o"],
    }
    for name, args in cases.items():
        out = os.path.join(d, name)
        open(out, "wb").write(precious)
        refused(args + [out], "exists")
        assert open(out, "rb").read() == precious
    # a CSV or an eval trace that exists counts too
    csv = os.path.join(d, "r2.csv")
    open(csv, "wb").write(precious)
    refused(cases["r.h5"][:-1] + ["-o", os.path.join(d, "r2.h5")], "exists")
    assert not os.path.exists(os.path.join(d, "r2.h5")) and open(csv, "rb").read() == precious
    etrace = os.path.join(d, "e2-trace.h5")
    open(etrace, "wb").write(precious)
    refused(cases["e.h5"] + [os.path.join(d, "e2.h5")], "exists")
    assert open(etrace, "rb").read() == precious
    for name, args in cases.items():
        out = os.path.join(d, name)
        run(*args, out, "--force")
        with h5py.File(out, "r") as f:
            assert f.attrs["format"].startswith("kvtrace-")
    assert all(not f.startswith(".") for f in os.listdir(d)), os.listdir(d)


def fsize_limit(kib):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))
    return apply


def limited(args, kib):
    return subprocess.run([KVTRACE, *map(str, args)], capture_output=True, preexec_fn=fsize_limit(kib))


def write_failure_file_size():
    """A write that fails (file-size limit, as `ulimit -f` sets) gives one line naming the file and the
    OS error, a non-zero exit, the previous output intact and no stray file."""
    d = workdir()
    old_r, old_a = os.path.join(d, "r.h5"), os.path.join(d, "a.h5")
    run("simulate", TRACE, "--policy", "h2o", "--budget", "4", "--layers", "0", "-o", old_r)
    run("analyze", TRACE, "--bootstrap", "10", "-o", old_a)
    before = {p: digest(p) for p in (old_r, old_a, old_r[:-3] + ".csv", old_a[:-3] + ".csv")}
    for args, out in ((["simulate", TRACE, "--policy", "h2o", "--policy", "a2sf", "--budget", "10%,20%,40%", "-o", old_r,
                        "--force"], old_r),
                      (["analyze", TRACE, "--bootstrap", "10", "-o", old_a, "--force"], old_a),
                      (["record", MODEL, "--tokens", "1", "--generate", "300", "--no-stop", "-o",
                        os.path.join(d, "new.h5")], os.path.join(d, "new.h5"))):
        p = limited(args, 24)
        line = expect_clean_failure(p, must_mention=out, codes=(1,))
        assert "File too large" in line, line
    assert {p: digest(p) for p in before} == before
    assert visible(d) == ["a.csv", "a.h5", "r.csv", "r.h5"], visible(d)
    assert not [f for f in os.listdir(d) if f.startswith(".")], os.listdir(d)


def mounted_tmpfs(d, options):
    os.makedirs(d, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", d], capture_output=True)
    return p.returncode == 0


def write_failure_disk_full():
    """The same on a full disk (a small tmpfs) and in a read-only folder, where this machine allows mounting."""
    d = os.path.join(workdir(), "small")
    if not mounted_tmpfs(d, "size=400k"):
        print("cannot mount a tmpfs here (not root?): the file-size limit case covers write failures")
        return
    try:
        old = os.path.join(d, "r.h5")
        run("simulate", TRACE, "--policy", "h2o", "--budget", "4", "--layers", "0", "-o", old)
        before = digest(old)
        filler = os.path.join(d, "filler")
        free = os.statvfs(d).f_bavail * os.statvfs(d).f_frsize
        open(filler, "wb").write(b"\0" * max(0, free - 8192))
        p = run("simulate", TRACE, "--policy", "h2o", "--policy", "a2sf", "--budget", "10%,20%,40%", "-o", old,
                "--force", check=False)
        line = expect_clean_failure(p, must_mention=old, codes=(1,))
        assert "No space left on device" in line, line
        p = run("record", MODEL, "--tokens", "1", "--generate", "500", "--no-stop", "-o", os.path.join(d, "t.h5"),
                check=False)
        line = expect_clean_failure(p, codes=(1,))
        assert "No space left on device" in line, line
        assert digest(old) == before
        assert visible(d) == ["filler", "r.csv", "r.h5"], visible(d)
    finally:
        subprocess.run(["umount", d])
    ro = os.path.join(workdir(), "ro")
    if mounted_tmpfs(ro, "ro,size=64k"):
        try:
            p = run("simulate", TRACE, "--policy", "h2o", "--budget", "4", "-o", os.path.join(ro, "r.h5"), check=False)
            line = expect_clean_failure(p, must_mention=os.path.join(ro, "r.h5"))
            assert "not writable" in line or "Read-only" in line, line
        finally:
            subprocess.run(["umount", ro])


def killed_run_keeps_old():
    """kill -9 in the middle of simulate --force or record --force: the old output is byte-identical."""
    d = workdir()
    old = os.path.join(d, "r.h5")
    run("simulate", TRACE, "--policy", "h2o", "--budget", "4", "--layers", "0", "-o", old)
    old_trace = os.path.join(d, "t.h5")
    run("record", MODEL, "--tokens", "1,403,407", "-o", old_trace)
    before = {p: digest(p) for p in (old, old_trace)}
    proc = subprocess.Popen([KVTRACE, "simulate", TRACE, "--policy", "optimal", "--budget", "20%", "--threads", "1",
                             "-o", old, "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.wait()
    p = run("record", MODEL, "--tokens", "1", "--generate", "500", "--no-stop", "-o", old_trace, "--force",
            env={"KVTRACE_TEST_SIGNAL": "KILL:300"}, check=False)
    assert p.returncode == -signal.SIGKILL, p.returncode
    assert {p: digest(p) for p in before} == before
    assert visible(d) == ["r.csv", "r.h5", "t.h5"], visible(d)


def concurrent_record():
    """Two recordings started together for one new output: exactly one wins, the other says so."""
    for trial in range(3):
        d = workdir()
        out = os.path.join(d, "dup.h5")
        procs = [subprocess.Popen([KVTRACE, "record", MODEL, "--prompt", prompt, "--generate", "300", "--no-stop",
                                   "-o", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for prompt in ("Once upon a time", "The dog")]
        results = [(p.wait(), p.stderr.read().decode()) for p in procs]
        codes = sorted(c for c, _ in results)
        assert codes == [0, 1], results
        loser = [e for c, e in results if c == 1][0]
        assert "exists" in loser or "appeared" in loser, loser
        winner = [i for i, (c, _) in enumerate(results) if c == 0][0]
        with h5py.File(out, "r") as f:
            assert f.attrs["complete"] == 1
            assert f["sequences/0000"].attrs["prompt"] == ("Once upon a time", "The dog")[winner]
        assert visible(d) == ["dup.h5"], visible(d)


def read_rows(path):
    """Every dataset of sequence 0 up to n_rows, as an SWMR reader (the writer may be running or dead)."""
    with h5py.File(path, "r", swmr=True) as f:
        s = f["sequences/0000"]
        n = int(s.attrs["n_rows"])
        rows = {"tokens": s["tokens"][:n], "pieces": s["pieces"][:n], "nll": s["nll"][:n]}
        for l in range(int(f.attrs["n_layers"])):
            for name in ("q", "k", "v", "k_norm", "v_norm_l1", "v_norm_l2"):
                ds = s[f"layers/{l:03d}/{name}"]
                assert ds.shape[0] >= n, (name, ds.shape, n)
                rows[f"{l}/{name}"] = ds[:n]
        return n, int(s.attrs["complete"]), rows


def same_prefix(part, whole, n):
    for key, value in part.items():
        ref = whole[key][:n]
        if key == "nll":  # the last row's NLL waits for the next token
            assert np.array_equal(value[:n - 1], ref[:n - 1]), key
        else:
            assert np.array_equal(value, ref), key


def kill9_random_points():
    """kill -9 at random points, several times: every dataset reads back up to the last flush (n_rows),
    the rows equal an uninterrupted recording's, and info/simulate accept the incomplete trace."""
    d = workdir()
    args = ["record", MODEL, "--tokens", "1", "--generate", "700", "--no-stop"]
    whole_path = os.path.join(d, "whole.h5")
    run(*args, "-o", whole_path)
    _, _, whole = read_rows(whole_path)
    rng = random.Random(9)
    points = sorted(rng.sample(range(5, 690), 6))
    for k in points:
        out = os.path.join(d, f"killed_{k}.h5")
        p = run(*args, "-o", out, env={"KVTRACE_TEST_SIGNAL": f"KILL:{k}"}, check=False)
        assert p.returncode == -signal.SIGKILL, p.returncode
        info = run("info", out, check=False)
        assert info.returncode == 3, (k, info.returncode, info.stderr)
        n, complete, rows = read_rows(out)
        assert complete == 0
        # rows are flushed every 128 at most: what was flushed before the kill is there
        assert k - 128 <= n <= k, (k, n)
        same_prefix(rows, whole, n)
        if n >= 8:
            run("simulate", out, "--policy", "h2o", "--budget", "4", "--allow-incomplete", "-o", out + ".r.h5")
    for delay in (0.15, 0.4):  # and by the clock, wherever the recorder happens to be
        out = os.path.join(d, f"timer_{delay}.h5")
        proc = subprocess.Popen([KVTRACE, *args, "-o", out], stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        if os.path.exists(out):
            n, _, rows = read_rows(out)
            same_prefix(rows, whole, n)
            info = run("info", out, check=False)
            assert info.returncode in (0, 3), info.stderr
        else:  # killed before the file was consistent: nothing at the name
            assert visible(d).count(os.path.basename(out)) == 0


def read_while_recording():
    """Readers opened during a recording (kvtrace info, h5py as SWMR reader) see a consistent prefix."""
    d = workdir()
    args = ["record", MODEL, "--tokens", "1", "--generate", "1800", "--no-stop"]
    whole_path = os.path.join(d, "whole.h5")
    run(*args, "-o", whole_path)
    _, _, whole = read_rows(whole_path)
    out = os.path.join(d, "live.h5")
    proc = subprocess.Popen([KVTRACE, *args, "-o", out], stderr=subprocess.DEVNULL)
    seen = []
    while proc.poll() is None:
        if os.path.exists(out):
            info = run("info", out, check=False)
            assert info.returncode in (0, 3), info.stderr
            n, _, rows = read_rows(out)
            same_prefix(rows, whole, n)
            seen.append(n)
        time.sleep(0.05)
    assert proc.wait() == 0
    print("rows seen while recording:", seen)
    assert any(0 < n < 1801 for n in seen), seen
    n, complete, rows = read_rows(out)
    assert n == 1801 and complete == 1
    same_prefix(rows, whole, n)


main({f.__name__: f for f in (output_is_input, existing_output, write_failure_file_size, write_failure_disk_full,
                              killed_run_keeps_old, concurrent_record, kill9_random_points, read_while_recording)})
