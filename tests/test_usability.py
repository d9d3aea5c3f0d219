"""What a new user meets in the first hour: the demo from any folder and from
an installed tree, progress with an ETA, honest spreads, repeatable options,
help texts, provenance (shell-quoted commands, sha256 of every input) and
tidy CSV files."""
import csv
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time

import h5py
import numpy as np

from helpers import KVTRACE, MODEL, main, run, workdir

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TRACE = os.path.join(REPO, "traces", "stories260K.h5")
TEXTS = os.path.join(REPO, "texts", "stories.txt")


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def demo_outputs_ok(out_dir, text):
    for name in ("results.h5", "results.csv", "analysis.h5", "analysis.csv"):
        assert os.path.exists(os.path.join(out_dir, name)), name
    assert "Summary" in text, text[-2000:]
    figures = os.listdir(os.path.join(out_dir, "figures"))
    assert any(f.endswith(".png") for f in figures), figures


def demo_from_elsewhere():
    """kvtrace demo from a folder that is not the repository: it finds its prompts, texts and model."""
    d = workdir()
    p = subprocess.run([KVTRACE, "demo", "-o", "out"], cwd=d, capture_output=True)
    text = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    demo_outputs_ok(os.path.join(d, "out"), text)
    assert "recorded 6 sequences" in text and os.path.join("traces", "prompts.txt") in text, text[:2000]
    # a second run refuses to replace the demo's files without --force
    p = subprocess.run([KVTRACE, "demo", "-o", "out"], cwd=d, capture_output=True)
    assert p.returncode != 0 and "exists; use --force" in p.stderr.decode(), p.stderr.decode()


def demo_installed():
    """meson install --destdir, then the installed kvtrace's demo from another folder finds its data files
    beside it (here without a model: it replays the installed example trace)."""
    build = os.path.dirname(KVTRACE)
    dest = os.path.join(workdir(), "dest")
    p = subprocess.run(["meson", "install", "-C", build, "--destdir", dest, "--quiet"], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    installed = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs]
    binary = [f for f in installed if f.endswith("/bin/kvtrace")]
    assert binary, installed
    assert any(f.endswith("share/kvtrace/traces/prompts.txt") for f in installed), installed
    assert any(f.endswith("share/kvtrace/texts/stories.txt") for f in installed), installed
    d = workdir()
    env = dict(os.environ, KVTRACE_MODEL=os.path.join(d, "no-model.gguf"))
    p = subprocess.run([binary[0], "demo", "-o", "out"], cwd=d, capture_output=True, env=env)
    text = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert "using the example trace " + os.path.join(dest) in text, text[:1500]
    demo_outputs_ok(os.path.join(d, "out"), text)


def progress_eta():
    """A long run's progress line shows an ETA and moves at least every second, even when the work
    reports nothing for a while (here: a long bootstrap)."""
    d = workdir()
    env = dict(os.environ, KVTRACE_PROGRESS="1")
    proc = subprocess.Popen([KVTRACE, "analyze", TRACE, "--bootstrap", "1000", "-o", os.path.join(d, "a.h5")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stamps, lines, buf = [], [], b""
    while True:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        while b"\r" in buf:
            line, buf = buf.split(b"\r", 1)
            if line.strip():
                stamps.append(time.monotonic())
                lines.append(line.decode(errors="replace"))
    assert proc.wait() == 0
    assert len(lines) >= 3, lines
    eta = [l for l in lines if "ETA" in l]
    assert eta, lines[:5]
    print(eta[0], "|", lines[-1][:120])
    gaps = np.diff(stamps)
    print(f"{len(lines)} redraws over {stamps[-1] - stamps[0]:.1f} s, largest gap {gaps.max():.2f} s")
    assert gaps.max() < 1.6, gaps.max()


def optimal_estimate():
    """Asking for optimal on a long trace announces its estimated time before the replay starts
    (4 units of 4096 tokens at two budgets: about 40 CPU seconds by its T^3 model); the run is
    stopped once announced.  A short trace starts without a word."""
    from helpers import synthetic_trace
    d = workdir()
    long = synthetic_trace(os.path.join(d, "long.h5"), T=4096, H=2, KV=2, layers=2)
    out = os.path.join(d, "o.h5")
    proc = subprocess.Popen([KVTRACE, "simulate", long, "--policy", "optimal", "--budget", "10%,40%", "--threads", "2",
                             "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode()
    proc.kill()
    proc.wait()
    print(line.strip())
    m = re.match(r"kvtrace: optimal will take about (\d+) s of CPU time \(about (\d+) s on 2 threads\) for 4 cache "
                 r"units of up to 4096 tokens at 2 budgets", line)
    assert m, line
    # 1.05e-10 * 4096^3 * ((0.5 + 0.1) + (0.5 + 0.4)) * 4 units
    assert abs(int(m.group(1)) - 1.05e-10 * 4096 ** 3 * 1.5 * 4) <= 1, line
    assert not os.path.exists(out)
    p = run("simulate", TRACE, "--policy", "optimal", "--budget", "20%", "--layers", "0", "-o", out)
    assert "will take about" not in p.stderr.decode(), p.stderr.decode()


def one_sequence():
    """With one sequence there is no spread: NaN in the file, an empty CSV cell, no '±' in the table."""
    d = workdir()
    t = os.path.join(d, "t.h5")
    run("record", MODEL, "--tokens", "1", "--generate", "60", "--no-stop", "-o", t)
    out = os.path.join(d, "r.h5")
    p = run("simulate", t, "--policy", "h2o", "--budget", "20%", "--budget", "40%", "-o", out)
    table = p.stdout.decode()
    assert "±" not in table and "one sequence" in table, table
    with h5py.File(out) as f:
        assert np.isnan(f["summary/retained_mass_std"][:]).all()
        assert [b.decode() for b in f["configs/budget"][:]] == ["20%", "40%"]  # --budget repeats like --policy
    rows = list(csv.DictReader(open(out[:-3] + ".csv")))
    assert all(r["retained_mass_std"] == "" for r in rows), rows[0]


def help_texts():
    """Help shows what the program does: no doubled %%, the same defaults as the results file."""
    for cmd in ("record", "simulate", "analyze", "plot", "eval", "demo", "info"):
        text = run(cmd, "--help").stdout.decode()
        assert "%%" not in text, (cmd, text)
        assert "DESIGN.md" not in text, cmd
    help_line = [l for l in run("simulate", "--help").stdout.decode().splitlines() if l.strip().startswith("knorm")][0]
    d = workdir()
    out = os.path.join(d, "r.h5")
    long_params = "a2sf:alpha=0.123456,recent=0.333333"
    p = run("simulate", TRACE, "--policy", "knorm", "--policy", long_params, "--budget", "20%", "-o", out)
    with h5py.File(out) as f:
        params = f["configs/params"][0].decode()
        assert params in help_line, (params, help_line)
        assert f["configs/params"][1].decode() in p.stdout.decode(), "the table cut the parameters"


def provenance():
    """The command attribute pastes back into a shell; results, analysis and eval files carry the sha256
    of every input trace and of the model."""
    d = workdir()
    odd = os.path.join(d, "it's a trace.h5")
    shutil.copy(TRACE, odd)
    out = os.path.join(d, "r.h5")
    args = ["simulate", odd, "--policy", "a2sf:alpha=0.1", "--budget", "20%", "-o", out]
    run(*args)
    with h5py.File(out) as f:
        assert shlex.split(f.attrs["command"]) == ["kvtrace", *args], f.attrs["command"]
        assert f.attrs["trace_sha256"] == sha256(odd)
        assert f.attrs["model_sha256"] == sha256(MODEL)
    a = os.path.join(d, "a.h5")
    run("analyze", odd, "--bootstrap", "10", "-o", a)
    with h5py.File(a) as f:
        assert f.attrs["trace_sha256"] == sha256(odd) and f.attrs["model_sha256"] == sha256(MODEL)
    e = os.path.join(d, "e.h5")
    run("eval", MODEL, "--text-file", TEXTS, "--policy", "h2o", "--budget", "20%", "-o", e)
    with h5py.File(e) as f:
        assert f.attrs["trace_sha256"] == sha256(e[:-3] + "-trace.h5")
        assert f.attrs["model_sha256"] == sha256(MODEL)


def tidy_csv():
    """Results, eval and analysis CSVs are tidy: numeric layer/head, run columns, one header."""
    d = workdir()
    outs = []
    for mode in ([], ["--prefill"]):
        out = os.path.join(d, f"r{len(outs)}.h5")
        run("simulate", TRACE, "--policy", "h2o", "--budget", "20%", *mode, "-o", out)
        outs.append(out[:-3] + ".csv")
    rows = [r for path in outs for r in csv.DictReader(open(path))]  # two runs concatenate
    assert {r["mode"] for r in rows} == {"streaming", "prefill"}
    for r in rows:
        assert r["trace"] == TRACE and r["model"] == "stories260K"
        assert (r["layer"] == "" and r["head"] == "") or (int(r["layer"]) >= 0 and int(r["head"]) >= 0)
        float(r["retained_mass"])
    a = os.path.join(d, "a.h5")
    run("analyze", TRACE, "--bootstrap", "10", "-o", a)
    rows = list(csv.DictReader(open(a[:-3] + ".csv")))
    assert len(rows) == 5 * 8, len(rows)
    with h5py.File(a) as f:
        spearman = f["age_bias/spearman"][:]  # [S, L, H, K]
        k = [s.decode() for s in f["age_bias/scores"][:]].index("h2o")
        expect = np.nanmean(spearman[:, 2, 3, k])
    row = [r for r in rows if r["layer"] == "2" and r["head"] == "3"][0]
    assert abs(float(row["age_spearman_h2o"]) - expect) < 1e-6, (row["age_spearman_h2o"], expect)


main({f.__name__: f for f in (demo_from_elsewhere, demo_installed, progress_eta, one_sequence, help_texts, provenance,
                              tidy_csv, optimal_estimate)})
