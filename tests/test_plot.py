"""kvtrace plot through real gnuplot: every figure from real results, analysis
and trace files, the text terminal, re-drawing by hand, and bad input."""
import os
import shutil
import struct
import subprocess

from helpers import expect_clean_failure, main, run, workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(REPO, "traces", "stories260K.h5")
POLICIES = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv:window=8", "random",
            "ideal", "optimal"]
FIGURES = ["age_bias", "mass", "error", "retention", "eviction_age", "heatmap", "key_norm", "value_norm"]


def inputs(d):
    results, analysis = os.path.join(d, "results.h5"), os.path.join(d, "analysis.h5")
    args = [a for p in POLICIES for a in ("--policy", p)]
    run("simulate", STORIES, *args, "--layers", "2", "--heads", "0", "--retention", "2:0", "--threads", "2", "-o", results)
    run("analyze", STORIES, "--bootstrap", "50", "-o", analysis)
    return results, analysis


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def gnuplot_log_clean(out, name):
    with open(os.path.join(out, "data", name + ".log")) as f:
        log = f.read()
    assert "error" not in log.lower() and "warning" not in log.lower(), f"gnuplot said for {name}:\n{log}"


def every_figure_png():
    d = workdir()
    results, analysis = inputs(d)
    out = os.path.join(d, "figures")
    p = run("plot", results, analysis, STORIES, "-o", out)
    listed = p.stdout.decode().split()
    assert listed == [os.path.join(out, f + ".png") for f in FIGURES], listed
    for name in FIGURES:
        path = os.path.join(out, name + ".png")
        w, h = png_size(path)
        size = os.path.getsize(path)
        assert 800 <= w <= 4000 and 400 <= h <= 2000, (name, w, h)
        assert size > 15000, f"{name}.png is only {size} bytes"
        gnuplot_log_clean(out, name)
        print(f"{name}.png {w}x{h} {size} bytes")


def svg_and_replot():
    """SVG on request; replot.sh re-draws from the data files alone."""
    d = workdir()
    results, analysis = inputs(d)
    out = os.path.join(d, "svg")
    run("plot", results, analysis, "--format", "svg", "--figure", "mass,age_bias", "-o", out)
    for name in ("mass", "age_bias"):
        with open(os.path.join(out, name + ".svg")) as f:
            text = f.read()
        assert text.startswith("<?xml") and "<svg" in text and "</svg>" in text, name
    os.remove(os.path.join(out, "mass.svg"))
    os.remove(os.path.join(results))  # the inputs are no longer needed
    p = subprocess.run(["sh", os.path.join(out, "replot.sh")], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    assert os.path.getsize(os.path.join(out, "mass.svg")) > 5000


def dumb_curves():
    """The text terminal shows a curve (a key entry) for every policy."""
    d = workdir()
    results, _ = inputs(d)
    out = os.path.join(d, "dumb")
    run("plot", results, "--format", "dumb", "--figure", "mass", "-o", out)
    with open(os.path.join(out, "mass.txt")) as f:
        text = f.read()
    print(text)
    lines = text.splitlines()
    for policy in POLICIES:
        name = policy.split(":")[0]
        assert any(line.rstrip().endswith(" " + name) or (" " + name + " ") in line for line in lines), name
    assert "retained mass vs cache budget" in text
    gnuplot_log_clean(out, "mass")


def bad_input():
    d = workdir()
    results, analysis = inputs(d)
    out = os.path.join(d, "out")
    line = expect_clean_failure(run("plot", analysis, "--figure", "mass", "-o", out, check=False), "mass")
    assert "results file" in line and "analysis file" in line, line
    env = {"PATH": "/nonexistent"}
    expect_clean_failure(run("plot", results, "-o", out, env=env, check=False), "gnuplot-nox")
    blocker = os.path.join(d, "a-file")
    open(blocker, "w").close()
    expect_clean_failure(run("plot", results, "-o", os.path.join(blocker, "figs"), check=False), "a-file")
    expect_clean_failure(run("plot", results, "--figure", "nosuch", "-o", out, check=False), "nosuch")
    expect_clean_failure(run("plot", results, "--format", "jpeg", "-o", out, check=False), "jpeg")
    expect_clean_failure(run("plot", os.path.join(d, "missing.h5"), "-o", out, check=False), "missing.h5")
    expect_clean_failure(run("plot", STORIES, "--layer", "9", "-o", out, check=False), "layer 9")
    no_maps = os.path.join(d, "no_maps.h5")
    run("simulate", STORIES, "--policy", "h2o", "--layers", "0", "-o", no_maps)
    expect_clean_failure(run("plot", no_maps, "--figure", "retention", "-o", out, check=False), "retention")
    assert shutil.which("gnuplot"), "gnuplot must be installed for these tests"


main(dict(every_figure_png=every_figure_png, svg_and_replot=svg_and_replot, dumb_curves=dumb_curves,
          bad_input=bad_input))
