"""kvtrace plot through real gnuplot: every figure from real results, analysis,
eval and trace files; the data and the scripts' variables behind each figure
(every configuration its own series with a distinct colour, dash and point);
the text, SVG and PDF terminals; several results files on one figure; the
output rule (atomic figure sets, --force, inputs never overwritten); and the
reliability corpus of damaged files."""
import glob
import os
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import zlib

import h5py
import numpy as np

from helpers import MODEL, expect_clean_failure, main, run, workdir, write_trace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(REPO, "traces", "stories260K.h5")
TEXTS = os.path.join(REPO, "texts", "stories.txt")
CORPUS = os.path.join(REPO, "tests", "corpus")
POLICIES = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv:window=8", "random",
            "ideal", "optimal"]
SWEEP = ["h2o", "h2o:recent=0", "a2sf:alpha=0.1", "a2sf:alpha=0.2", "a2sf:alpha=0.5", "a2sf:alpha=0.9", "window",
         "streaming", "vatp", "knorm", "tova", "snapkv:window=8", "random", "ideal", "optimal", "full"]
FIGURES = ["age_bias", "mass", "error", "retention", "eviction_age", "heatmap", "key_norm", "value_norm", "nll",
           "offline_vs_closed"]


# ------------------------------------------------------------------ inputs

def simulate(d, policies=POLICIES, name="results.h5", *extra):
    out = os.path.join(d, name)
    args = [a for p in policies for a in ("--policy", p)]
    run("simulate", STORIES, *args, "--layers", "2", "--heads", "0", "--retention", "2:0", "--threads", "2",
        *extra, "-o", out)
    return out


def analyze(d, *extra):
    out = os.path.join(d, "analysis.h5")
    run("analyze", STORIES, "--bootstrap", "50", *extra, "-o", out)
    return out


def evaluate(d, policies=("full", "window", "h2o", "a2sf", "knorm", "random"), budgets="10%,40%"):
    out = os.path.join(d, "eval.h5")
    args = [a for p in policies for a in ("--policy", p)]
    run("eval", MODEL, "--text-file", TEXTS, *args, "--budget", budgets, "--generate", "2", "--threads", "2",
        "-o", out)
    return out


# ------------------------------------------------------------------ reading what plot wrote

def parse_vars(text):
    """gnuplot -e assignments (name='value' with '' for ', or name=number) as a dict."""
    out, i = {}, 0
    while i < len(text):
        eq = text.index("=", i)
        name = text[i:eq].strip()
        if text[eq + 1] == "'":
            j, value = eq + 2, ""
            while True:
                k = text.index("'", j)
                value += text[j:k]
                if text[k + 1:k + 2] == "'":
                    value += "'"
                    j = k + 2
                else:
                    break
            out[name], i = value, text.index(";", k) + 1
        else:
            end = text.index(";", eq)
            out[name], i = float(text[eq + 1:end]), end + 1
        while i < len(text) and text[i] == " ":
            i += 1
    return out


def figure_vars(out, script):
    """The variables of every figure drawn with script, from replot.sh (in order)."""
    found = []
    with open(os.path.join(out, "replot.sh")) as f:
        for line in f:
            if line.startswith("gnuplot "):
                words = shlex.split(line)
                if words[-1] == "scripts/" + script:
                    found.append(parse_vars(words[2]))
    return found


def one_figure(out, name, script):
    for v in figure_vars(out, script):
        if v["out"].rsplit(".", 1)[0] == name:
            return v
    raise AssertionError(f"{name} is not in {out}/replot.sh")


def blocks(path):
    """Blocks of a data file (separated by two blank lines): (label, rows of floats)."""
    with open(path) as f:
        text = f.read()
    result = []
    for chunk in text.split("\n\n\n"):
        lines = [l for l in chunk.splitlines() if l.strip()]
        labels = [l[2:] for l in lines if l.startswith("# ")]
        rows = [[float(x) if x not in ("NaN", "nan") else float("nan") for x in l.split()[:8] if _number(x)]
                for l in lines if not l.startswith("#")]
        if rows:
            result.append((labels[-1] if labels else "", rows))
    return result


def _number(x):
    try:
        float(x)
        return True
    except ValueError:
        return False


def check_styles(v, expect_n=None):
    """Every series its own (colour, dash, point) triple, distinct in colour and in (dash, point)."""
    series = shlex.split(v["series"])
    colours, dashes, points = v["colours"].split(), v["dashes"].split(), v["points"].split()
    assert len(series) == len(colours) == len(dashes) == len(points), v
    if expect_n is not None:
        assert len(series) == expect_n, (len(series), expect_n, series)
    assert len(set(series)) == len(series), f"two series share a label: {series}"
    assert len(set(colours)) == len(colours), f"two series share a colour: {list(zip(series, colours))}"
    bw = list(zip(dashes, points))
    assert len(set(bw)) == len(bw), f"two series look alike in black and white: {list(zip(series, bw))}"
    return series


def gnuplot_log_clean(out, name):
    with open(os.path.join(out, "data", name + ".log")) as f:
        log = f.read()
    assert "error" not in log.lower() and "warning" not in log.lower(), f"gnuplot said for {name}:\n{log}"


def read_png(path):
    """Width, height and a pixel(x, y) -> (r, g, b) of an 8-bit PNG (what pngcairo writes)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data[pos + 8:pos + 8 + n])
        elif kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0 and ctype in (2, 6), ihdr
    bpp, raw = (3 if ctype == 2 else 4), zlib.decompress(idat)
    stride, prev, rows, i = w * bpp, bytearray(w * bpp), [], 0
    for _ in range(h):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, lambda x, y: tuple(rows[y][x * bpp:x * bpp + 3])


def dumb_shows(path, labels):
    with open(path) as f:
        text = f.read()
    for label in labels:
        assert label in text, f"{os.path.basename(path)} does not show {label!r}:\n{text}"
    return text


# ------------------------------------------------------------------ cases

def every_figure_png():
    """All ten figures from real results, analysis, trace and eval files."""
    d = workdir()
    inputs = [simulate(d), analyze(d), STORIES, evaluate(d)]
    out = os.path.join(d, "figures")
    p = run("plot", *inputs, "-o", out)
    listed = p.stdout.decode().split()
    assert listed == [os.path.join(out, f + ".png") for f in FIGURES], listed
    for name in FIGURES:
        w, h, _ = read_png(os.path.join(out, name + ".png"))
        size = os.path.getsize(os.path.join(out, name + ".png"))
        assert w == 1050 and 400 <= h <= 1600, (name, w, h)  # page width: 7 in at 150 dpi
        assert size > 15000, f"{name}.png is only {size} bytes"
        gnuplot_log_clean(out, name)
        print(f"{name}.png {w}x{h} {size} bytes")
    assert not glob.glob(os.path.join(out, ".kvtrace-plot-*")), "the temporary folder was left behind"


def styles_and_series():
    """An alpha sweep and two h2o variants: every configuration is its own
    series, with its own colour (shades of its family's), dash and point;
    the data file has one block per series in the same order; the text
    rendering shows every series."""
    d = workdir()
    results = simulate(d, SWEEP, "results.h5", "--budget", "10%,20%,40%")
    out = os.path.join(d, "figs")
    run("plot", results, "--figure", "mass,error,eviction_age", "--format", "dumb", "-o", out)
    for name, script in (("mass", "budget_curves.gp"), ("error", "budget_curves.gp"),
                         ("eviction_age", "eviction_age.gp")):
        v = one_figure(out, name, script)
        series = check_styles(v, len(SWEEP) - 2 * (name == "eviction_age"))  # full and ideal never evict
        assert "a2sf(alpha=0.1,recent=0)" in series and "a2sf(alpha=0.9,recent=0)" in series, series
        assert "h2o(recent=0.5)" in series and "h2o(recent=0)" in series, series
        labels = [b[0] for b in blocks(os.path.join(out, v["data"]))]
        assert labels == series, (labels, series)
        dumb_shows(os.path.join(out, name + ".txt"), series)
        gnuplot_log_clean(out, name)
    v = one_figure(out, "mass", "budget_curves.gp")
    colours = dict(zip(shlex.split(v["series"]), v["colours"].split()))
    red = [int(colours[f"a2sf(alpha={a},recent=0)"][1:3], 16) for a in ("0.1", "0.2", "0.5", "0.9")]
    assert red == sorted(red) and len(set(red)) == 4, f"a2sf shades are not one family's ramp: {red}"
    with h5py.File(results) as f:  # the curves are the results' own numbers
        mean = f["summary/retained_mass_mean"][:]
        policy = [p.decode() for p in f["configs/policy"][:]]
        params = [p.decode() for p in f["configs/params"][:]]
        budget = [b.decode() for b in f["configs/budget"][:]]
    rows = dict(blocks(os.path.join(out, v["data"])))
    for c in range(len(mean)):
        label = f"{policy[c]}({params[c]})" if policy[c] in ("h2o", "a2sf") else policy[c]
        x = float(budget[c].rstrip("%"))
        got = [r[1] for r in rows[label] if r[0] == x]
        assert len(got) == 1 and abs(got[0] - mean[c]) < 1e-8, (label, budget[c], got, mean[c])


def filters_and_labels():
    """--policy/--config choose the series; two results files (streaming and
    prefill) go on one figure, told apart by their labels; incompatible inputs
    and mislabelled ones are refused."""
    d = workdir()
    stream = simulate(d, SWEEP[:6], "stream.h5", "--budget", "10%,20%")
    prefill = simulate(d, SWEEP[:6], "prefill.h5", "--budget", "10%,20%", "--prefill")
    out = os.path.join(d, "f1")
    run("plot", stream, "--figure", "mass", "--policy", "h2o", "--config", "a2sf:alpha=0.5", "--format", "dumb",
        "-o", out)
    series = check_styles(one_figure(out, "mass", "budget_curves.gp"), 3)
    assert series == ["h2o(recent=0.5)", "h2o(recent=0)", "a2sf(alpha=0.5,recent=0)"], series
    out = os.path.join(d, "f2")
    run("plot", stream, prefill, "--label", "streaming,prefill", "--figure", "mass,eviction_age", "--policy",
        "h2o,a2sf", "--format", "dumb", "-o", out)
    v = one_figure(out, "mass", "budget_curves.gp")
    series = check_styles(v, 12)
    assert sum(s.startswith("streaming: ") for s in series) == 6, series
    assert sum(s.startswith("prefill: ") for s in series) == 6, series
    assert "streaming" in v["title"] and "prefill" in v["title"], v["title"]
    dumb_shows(os.path.join(out, "mass.txt"), series)
    check_styles(one_figure(out, "eviction_age", "eviction_age.gp"), 12)
    tokens = os.path.join(d, "tokens.h5")
    run("simulate", STORIES, "--policy", "h2o", "--layers", "0", "--budget", "32", "-o", tokens)
    line = expect_clean_failure(run("plot", stream, tokens, "--figure", "mass", "-o", os.path.join(d, "x"),
                                    check=False), "budget")
    assert "tokens.h5" in line, line
    expect_clean_failure(run("plot", stream, prefill, "--label", "one", "-o", os.path.join(d, "x"), check=False),
                         "--label")
    expect_clean_failure(run("plot", stream, stream, "-o", os.path.join(d, "x"), check=False), "--label")
    expect_clean_failure(run("plot", stream, "--policy", "nosuch", "-o", os.path.join(d, "x"), check=False), "nosuch")
    expect_clean_failure(run("plot", stream, "--config", "a2sf:alpha=0.3", "-o", os.path.join(d, "x"), check=False),
                         "alpha=0.3")
    a = analyze(d)
    expect_clean_failure(run("plot", a, a, "-o", os.path.join(d, "x"), check=False), "one analysis file")
    assert not os.path.exists(os.path.join(d, "x")), "a refused run created its output folder"


def retention_maps():
    """Any chosen policies, tova and snapkv too, titled with their parameters;
    the rectangles in the data reproduce the results' maps exactly; the SVG of
    a 339-token map stays small and the PNG shows each map."""
    d = workdir()
    results = simulate(d)
    out = os.path.join(d, "r")
    run("plot", results, "--figure", "retention", "--policy", "tova,snapkv,h2o,ideal", "-o", out)
    v = one_figure(out, "retention", "retention.gp")
    titles = shlex.split(v["titles"])
    assert [t.split(" ")[0] for t in titles] == ["h2o", "tova", "snapkv", "ideal"], titles
    assert "recent=0.5" in titles[0] and "window=8," in titles[2], titles
    with h5py.File(results) as f:
        maps, policy = f["retention"][:], [p.decode() for p in f["configs/policy"][:]]
        budget = [b.decode() for b in f["configs/budget"][:]]
    middle = sorted(set(budget), key=budget.index)[len(set(budget)) // 2]
    for path, title in zip(v["files"].split(), titles):
        c = next(i for i in range(len(policy)) if policy[i] == title.split(" ")[0] and budget[i] == middle)
        T = maps.shape[1]
        rebuilt = np.full((T, T), -1, np.int8)
        for label, rows in blocks(os.path.join(out, path)):
            held = {"evicted": 0, "held": 1}[label]
            for i, t0, t1 in rows:
                rebuilt[int(t0):int(t1) + 1, int(i)] = held
        want = np.where(np.tril(np.ones((T, T), bool)), maps[c].astype(np.int8), -1)
        assert (rebuilt == want).all(), f"{title}: the rectangles differ from the results' map"
    gnuplot_log_clean(out, "retention")
    # a 339-token map, by hand: SVG under 1 MB
    rng = np.random.default_rng(3)
    T = 339
    trace = write_trace(os.path.join(d, "long.h5"), rng.normal(size=(1, T, 2, 8)), rng.normal(size=(1, T, 1, 8)))
    long_results = os.path.join(d, "long_results.h5")
    args = [a for p in POLICIES for a in ("--policy", p)]
    run("simulate", trace, *args, "--budget", "20%", "--retention", "0:0", "-o", long_results)
    out = os.path.join(d, "svg")
    run("plot", long_results, "--figure", "retention", "--format", "svg", "-o", out)
    size = os.path.getsize(os.path.join(out, "retention.svg"))
    print(f"retention.svg at T = {T}, {len(POLICIES) - 1} maps: {size} bytes")
    assert size < 1_000_000, size
    assert len(one_figure(out, "retention", "retention.gp")["files"].split()) == len(POLICIES) - 1  # all but full


def retention_long():
    """Maps of more than 1024 tokens are drawn as square cells of ceil(T/1024)
    tokens, each the share of its causal entries held (NumPy from the
    results' own maps, to the 4 digits written), -1 above the diagonal; PNG
    and SVG both draw them."""
    T, cell = 2500, 3
    d = workdir()
    rng = np.random.default_rng(8)
    trace = write_trace(os.path.join(d, "long.h5"), rng.normal(size=(1, T, 2, 8)), rng.normal(size=(1, T, 1, 8)))
    results = os.path.join(d, "results.h5")
    run("simulate", trace, "--policy", "h2o", "--policy", "tova", "--budget", "10%", "--retention", "0:0",
        "-o", results)
    with h5py.File(results) as f:
        maps, policy = f["retention"][:], [p.decode() for p in f["configs/policy"][:]]
        # chunks of about 4 MiB of steps: read a block at a time; none near HDF5's 4 GiB chunk limit
        assert f["retention"].chunks[0] == 1 and 1 < f["retention"].chunks[1] * T <= 4 << 20, f["retention"].chunks
    # a file written before that held each map as one chunk: drawn the same, the map read whole
    one_chunk = os.path.join(d, "one-chunk.h5")
    shutil.copy(results, one_chunk)
    with h5py.File(one_chunk, "r+") as f:
        attrs = dict(f["retention"].attrs)
        del f["retention"]
        f.create_dataset("retention", data=maps, chunks=(1, T, T), compression="gzip")
        f["retention"].attrs.update(attrs)
    n = -(-T // cell)
    causal = np.tril(np.ones((T, T), bool))
    pad = n * cell - T
    counts = np.pad(causal, ((0, pad), (0, pad))).reshape(n, cell, n, cell).sum(axis=(1, 3))
    for fmt, source in (("png", results), ("svg", results), ("png-one-chunk", one_chunk)):
        out = os.path.join(d, fmt)
        run("plot", source, "--figure", "retention", "--format", fmt.split("-")[0], "-o", out)
        v = one_figure(out, "retention", "retention.gp")
        assert v["cells"].split() == [str(cell)] * 2, v["cells"]
        gnuplot_log_clean(out, "retention")
        for path, title in zip(v["files"].split(), shlex.split(v["titles"])):
            assert path.endswith(".matrix"), path
            c = policy.index(title.split(" ")[0])
            held = np.pad(maps[c].astype(bool) & causal, ((0, pad), (0, pad))).reshape(n, cell, n, cell).sum(axis=(1, 3))
            want = np.where(counts > 0, held / np.maximum(counts, 1), -1)
            got = np.loadtxt(os.path.join(out, path))
            assert got.shape == (n, n), got.shape
            assert np.allclose(got, want, rtol=1e-3, atol=1e-4), np.abs(got - want).max()
            print(f"{fmt} {title.split(' ')[0]}: {n} x {n} cells equal the map's shares held "
                  f"(largest difference {np.abs(got - want).max():.1e})")
    assert os.path.getsize(os.path.join(d, "png", "retention.png")) > 10000


def eviction_ages():
    """Every policy is drawn, window and streaming (one eviction age each)
    too, as a visible step and a box; the quartiles are the results' own."""
    d = workdir()
    results = simulate(d, POLICIES, "results.h5", "--budget", "16,32,48")  # token budgets: one age for window
    out = os.path.join(d, "e")
    run("plot", results, "--figure", "eviction_age", "--format", "dumb", "-o", out)
    v = one_figure(out, "eviction_age", "eviction_age.gp")
    series = check_styles(v, len(POLICIES) - 2)  # all but full and ideal, which never evict
    assert "window" in series and "streaming" in series and "ideal" not in series, series
    text = dumb_shows(os.path.join(out, "eviction_age.txt"), series)
    assert "0.000010" not in text and "10.000000" not in text, "unreadable tick labels"
    cdf = dict(blocks(os.path.join(out, v["data"])))
    boxes = dict(blocks(os.path.join(out, v["boxes"])))
    with h5py.File(results) as f:
        ages, policy = f["eviction_age"][:], [p.decode() for p in f["configs/policy"][:]]
        budget = [b.decode() for b in f["configs/budget"][:]]
    middle = sorted(set(budget), key=budget.index)[len(set(budget)) // 2]
    for name in ("window", "streaming"):
        steps = cdf[name]
        assert len(steps) == 2 and steps[0][0] == steps[1][0] and steps[0][1] == 0 and steps[1][1] == 1, steps
    for label in series:
        c = next(i for i in range(len(policy)) if policy[i] == label and budget[i] == middle)
        h = ages[c].astype(float)
        cum = np.cumsum(h) / h.sum()
        want = [int(np.argmax(cum >= q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)]
        got = boxes[label][0][1:6]
        assert got == want, (label, got, want)
        assert boxes[label][0][7] == h.sum(), label


def age_bias_stories():
    """On the committed stories260K traces, analysed at four alphas: the
    figure's data shows H2O taking more of its kept set from the oldest
    third of the tokens than ideal and than A2SF at every alpha; the caption
    states those numbers; the Spearman panel is the analysis' per layer."""
    d = workdir()
    analysis = analyze(d, "--alpha", "0.1,0.2,0.5,0.9")
    out = os.path.join(d, "a")
    run("plot", analysis, "--figure", "age_bias", "--format", "dumb", "-o", out)
    v = one_figure(out, "age_bias", "age_bias.gp")
    methods = check_styles(v, 6)
    assert methods[0] == "H2O" and methods[-1].startswith("ideal"), methods
    share = blocks(os.path.join(out, v["share"]))
    assert [b[0].split(" ")[0] for b in share] == ["h2o", "a2sf_0.1", "a2sf_0.2", "a2sf_0.5", "a2sf_0.9", "ideal"]
    oldest = {}
    for label, rows in share:
        assert len(rows) == 12 and abs(sum(r[1] for r in rows) - 1) < 1e-6, label
        oldest[label.split(" ")[0]] = sum(r[1] for r in rows if r[0] > 2 / 3)
    print("share of the kept set in the oldest third:", oldest)
    for other in ("ideal", "a2sf_0.1", "a2sf_0.2", "a2sf_0.5", "a2sf_0.9"):
        assert oldest["h2o"] > oldest[other] + 0.1, (other, oldest)
    with open(os.path.join(out, v["share"])) as f:
        caption = f.readline()
    assert caption.startswith("# caption: ") and f"h2o {oldest['h2o']:.3f}" in caption, caption
    assert f"ideal {oldest['ideal']:.3f}" in caption, caption
    with h5py.File(analysis) as f:
        layer = f["age_bias/spearman_layer"][:]
        pooled = f["age_bias/spearman_pooled"][:]
    assert f"h2o {pooled[0, 0]:+.2f} [{pooled[0, 1]:+.2f}, {pooled[0, 2]:+.2f}]" in caption, caption
    rho = blocks(os.path.join(out, v["rho"]))
    assert len(rho) == layer.shape[1] and all(len(rows) == layer.shape[0] for _, rows in rho)
    for k, (_, rows) in enumerate(rho):
        for l, row in enumerate(rows):
            assert np.allclose(row[1:4], layer[l, k], atol=1e-8), (k, l, row, layer[l, k])
    scores = shlex.split(v["score_series"])
    assert len(set(v["score_colours"].split())) == len(scores) == 7, scores
    gnuplot_log_clean(out, "age_bias")


def norms_and_heatmap():
    """value_norm: per layer the sink and other tokens' norms and the ratio
    with its interval; key_norm; the heatmap is one crisp image whose floor
    is true black."""
    d = workdir()
    analysis = analyze(d)
    out = os.path.join(d, "n")
    run("plot", analysis, STORIES, "--figure", "value_norm,key_norm,heatmap", "--layer", "2", "-o", out)
    v = one_figure(out, "value_norm", "value_norm.gp")
    boxes = blocks(os.path.join(out, v["boxes"]))
    assert [b[0] for b in boxes] == ["other tokens", "sink tokens"], boxes
    with h5py.File(analysis) as f:
        L = f.attrs["n_layers"]
        ratio = f["value_norm/sink_value_ratio"][:]
    for _, rows in boxes:
        assert [int(r[1]) for r in rows] == list(range(L))
        assert all(r[2] <= r[3] <= r[4] <= r[5] <= r[6] for r in rows), rows
    (_, rows), = blocks(os.path.join(out, v["ratio"]))
    for l, row in enumerate(rows):
        assert abs(row[1] - np.nanmean(ratio[:, l, :])) < 1e-8 and row[2] <= row[1] <= row[3], (l, row)
    for name in ("value_norm", "key_norm", "heatmap"):
        gnuplot_log_clean(out, name)
    with open(os.path.join(out, "scripts", "attention_heatmap.gp")) as f:
        assert "with image notitle" in f.read()
    w, h, pixel = read_png(os.path.join(out, "heatmap.png"))
    black = sum(pixel(x, y) == (0, 0, 0) for x in range(0, w, 3) for y in range(0, h, 3))
    print(f"heatmap.png {w}x{h}: {black} black samples")
    assert black > 0.05 * (w // 3) * (h // 3), "the heatmap's floor is not true black"


def heatmap_long():
    """A 10000-token sequence is drawn in 10 x 10-token cells, each the mean
    of the exact attention over its causal entries (NumPy, float64, to the 4
    digits written), blank above the diagonal.  Rows are recomputed a block
    at a time, so the data is written within 350 MB of address space, where
    the 400 MB T x T matrix could not exist (under AddressSanitizer, which
    needs more address space: its peak resident memory stays below T x T).
    gnuplot then draws it with the colour floor a decade below 1/T."""
    T, d, cell = 10000, 8, 10
    work = workdir()
    rng = np.random.default_rng(5)
    q, k = rng.normal(size=(1, T, 2, d)), rng.normal(size=(1, T, 1, d))
    q[0, :, 1] += 2.0 * k[0, 0, 0]  # head 1 attends to a sink, token 0
    trace = write_trace(os.path.join(work, "long.h5"), q, k)
    with open(os.environ["KVTRACE"], "rb") as fh:
        asan = b"libasan.so" in fh.read()
    limit = 350 << 20

    def limit_memory():
        if not asan:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    data_only = os.path.join(work, "data-only")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = subprocess.run([os.environ["KVTRACE"], "plot", trace, "--figure", "heatmap", "--layer", "0", "--head", "1",
                        "--data-only", "-o", data_only], preexec_fn=limit_memory, capture_output=True, timeout=100)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"peak resident memory {peak / 2**20:.0f} MB (T x T would be {T * T * 4 / 2**20:.0f} MB)"
          f"{'' if asan else f', address space limited to {limit >> 20} MB'}")
    assert before * 1024 < T * T * 4 and peak < T * T * 4
    cells = np.loadtxt(os.path.join(data_only, "data", "heatmap.dat"))
    n = T // cell
    assert cells.shape == (n, n), cells.shape
    # the exact means, a block of rows at a time
    qh, kh = q[0, :, 1].astype(np.float32).astype(np.float64), k[0, :, 0].astype(np.float32).astype(np.float64)
    want = np.zeros((n, n))
    for y in range(0, n, 100):
        t = np.arange(y * cell, (y + 100) * cell)
        logits = qh[t] @ kh.T / np.sqrt(d)
        logits[np.arange(T)[None, :] > t[:, None]] = -np.inf
        a = np.exp(logits - logits.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        sums = a.reshape(100, cell, n, cell).sum(axis=(1, 3))
        counts = (np.arange(T)[None, :] <= t[:, None]).reshape(100, cell, n, cell).sum(axis=(1, 3))
        want[y:y + 100] = np.where(counts > 0, sums / np.maximum(counts, 1), 0)
    above = np.triu(np.ones((n, n), bool), 1)
    assert (cells[above] == 0).all() and (cells[~above] > 0).all()
    rel = np.abs(cells[~above] - want[~above]) / want[~above]
    print(f"{n} x {n} cells; largest relative difference from NumPy {rel.max():.2e}; "
          f"sink column {cells[-1, 0]:.3g}, its neighbour {cells[-1, 1]:.3g}")
    assert rel.max() < 1e-3, rel.max()
    assert cells[-1, 0] > 10 * cells[-1, 1], "the sink's column must show"
    out = os.path.join(work, "figure")
    run("plot", trace, "--figure", "heatmap", "--layer", "0", "--head", "1", "-o", out)
    v = one_figure(out, "heatmap", "attention_heatmap.gp")
    assert (v["cell"], v["decade"], v["T"]) == (10, -5, 10000), v  # 10^-5: a decade below 1/T
    assert "10 x 10-token cells" in v["cblabel"], v
    gnuplot_log_clean(out, "heatmap")
    w, h, _ = read_png(os.path.join(out, "heatmap.png"))
    assert w > 500 and h > 500, (w, h)


def offline_vs_closed():
    """The rank correlations in the eval file (with and without full, without
    knorm and random; overall and within a budget) are Spearman's on its own
    summary; the figure quotes them, and a negative ΔNLL is drawn at its value."""
    d = workdir()
    e = evaluate(d)
    with h5py.File(e) as f:
        mass, delta = f["summary/offline_retained_mass_mean"][:], f["summary/delta_nll_mean"][:]
        policy = [p.decode() for p in f["configs/policy"][:]]
        budget = [b.decode() for b in f["configs/budget"][:]]
        attrs = dict(f.attrs)

    def spearman(idx):
        def ranks(v):
            order = np.argsort(v, kind="stable")
            r = np.empty(len(v))
            r[order] = np.arange(len(v))
            for x in set(v):  # average ranks for ties
                r[v == x] = r[v == x].mean()
            return r
        x, y = ranks(mass[idx]), ranks(-delta[idx])
        return np.corrcoef(x, y)[0, 1]

    sets = {"": lambda p: True, "_without_full": lambda p: p != "full",
            "_without_full_knorm_random": lambda p: p not in ("full", "knorm", "random")}
    for suffix, keep in sets.items():
        idx = [c for c in range(len(policy)) if keep(policy[c])]
        assert abs(attrs["rank_correlation" + suffix] - spearman(idx)) < 1e-12, suffix
        within = [spearman([c for c in idx if budget[c] == b]) for b in sorted(set(budget))]
        assert abs(attrs["rank_correlation" + suffix + "_within_budget"] - np.mean(within)) < 1e-12, suffix
    out = os.path.join(d, "o")
    run("plot", e, "--figure", "offline_vs_closed,nll", "-o", out)
    v = one_figure(out, "offline_vs_closed", "offline_vs_closed.gp")
    check_styles(v)
    assert f"{attrs['rank_correlation']:+.2f} with full, {attrs['rank_correlation_without_full']:+.2f} without" \
        in v["subtitle"], v["subtitle"]
    assert f"{attrs['rank_correlation_without_full_within_budget']:+.2f} without full" in v["subtitle"], v["subtitle"]
    gnuplot_log_clean(out, "offline_vs_closed")
    # a pruned cache better than the full one: drawn at its (negative) value
    neg = os.path.join(d, "negative.h5")
    shutil.copy(e, neg)
    with h5py.File(neg, "r+") as f:
        c = policy.index("h2o") + 1  # h2o at 40 %
        f["summary/delta_nll_mean"][c] = -0.02
    out = os.path.join(d, "neg")
    run("plot", neg, "--figure", "offline_vs_closed,nll", "--format", "dumb", "-o", out)
    for name, script in (("offline_vs_closed", "offline_vs_closed.gp"), ("nll", "budget_curves.gp")):
        v = one_figure(out, name, script)
        values = [r[1] for label, rows in blocks(os.path.join(out, v["data"])) if label.startswith("h2o") for r in rows]
        assert -0.02 in values, values
        assert v["symlog"] == 1 and v["ymin"] < -0.02 < v["ymax"], v
        gnuplot_log_clean(out, name)


def pdf_svg_sizes():
    """PDF is a valid one-page PDF of the asked size; SVG is well formed."""
    d = workdir()
    results = simulate(d, ["h2o", "a2sf", "window"])
    for size, width_pt in (("column", 244.8), ("page", 504.0), ("6x4in", 432.0), ("1200x600", 576.0)):
        out = os.path.join(d, "pdf-" + size)
        run("plot", results, "--figure", "mass,retention", "--format", "pdf", "--size", size, "-o", out)
        for name in ("mass", "retention"):
            path = os.path.join(out, name + ".pdf")
            with open(path, "rb") as f:
                assert f.read(5) == b"%PDF-", path
            if shutil.which("pdfinfo"):
                info = subprocess.run(["pdfinfo", path], capture_output=True, text=True).stdout
                assert "Pages:          1" in info or "Pages: 1" in " ".join(info.split()), info
                page = [l for l in info.splitlines() if l.startswith("Page size:")][0].split()
                assert abs(float(page[2]) - width_pt) < 1, (size, page)
    out = os.path.join(d, "svg")
    run("plot", results, "--format", "svg", "--figure", "mass,eviction_age", "-o", out)
    for name in ("mass", "eviction_age"):
        with open(os.path.join(out, name + ".svg")) as f:
            text = f.read()
        assert text.startswith("<?xml") and "<svg" in text and "</svg>" in text, name
    for bad in ("huge", "0x5", "100x100in"):
        expect_clean_failure(run("plot", results, "--size", bad, "-o", os.path.join(d, "x"), check=False), bad)


def svg_and_replot():
    """replot.sh re-draws from the data files alone."""
    d = workdir()
    results, analysis = simulate(d, ["h2o", "a2sf"]), analyze(d)
    out = os.path.join(d, "svg")
    run("plot", results, analysis, "--format", "svg", "--figure", "mass,age_bias", "-o", out)
    os.remove(os.path.join(out, "mass.svg"))
    os.remove(results)  # the inputs are no longer needed
    p = subprocess.run(["sh", os.path.join(out, "replot.sh")], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    assert os.path.getsize(os.path.join(out, "mass.svg")) > 5000


def outputs_are_safe():
    """A figure set appears whole or not at all; existing files need --force;
    an input is never an output, even with --force."""
    d = workdir()
    no_maps = os.path.join(d, "no_maps.h5")
    run("simulate", STORIES, "--policy", "h2o", "--layers", "0", "-o", no_maps)
    out = os.path.join(d, "figs")
    expect_clean_failure(run("plot", no_maps, "--figure", "mass,retention", "-o", out, check=False), "retention")
    assert not os.path.exists(out), os.listdir(out)
    os.mkdir(out)
    expect_clean_failure(run("plot", no_maps, "--figure", "mass,retention", "-o", out, check=False), "retention")
    assert os.listdir(out) == [], os.listdir(out)  # no mass.png, no data, no temporary folder
    run("plot", no_maps, "--figure", "mass", "-o", out)
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p)}
    expect_clean_failure(run("plot", no_maps, "--figure", "mass", "-o", out, check=False), "--force")
    after = {p: open(p, "rb").read() for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p)}
    assert before == after, "a refused run changed the figure set"
    run("plot", no_maps, "--figure", "mass", "--force", "-o", out)
    assert not glob.glob(os.path.join(out, ".kvtrace-plot-*"))
    original = open(no_maps, "rb").read()
    trap = os.path.join(d, "trap")
    os.mkdir(trap)
    os.symlink(no_maps, os.path.join(trap, "mass.png"))
    expect_clean_failure(run("plot", no_maps, "--figure", "mass", "--force", "-o", trap, check=False), "same file")
    assert open(no_maps, "rb").read() == original
    expect_clean_failure(run("plot", no_maps, "--force", "-o", no_maps, check=False), "not a folder")
    assert open(no_maps, "rb").read() == original
    # a write that fails (file size limit, as on a full disk): one line naming the file, nothing left

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    maps = simulate(d, ["h2o", "a2sf", "ideal"], "maps.h5")
    full = os.path.join(d, "full")
    p = subprocess.run([os.environ["KVTRACE"], "plot", maps, "--figure", "retention", "-o", full],
                       capture_output=True, preexec_fn=small_files)
    line = expect_clean_failure(p, "writing the plot data failed: File too large")
    assert line.split(": ")[1].startswith(full + "/data/"), line
    assert not os.path.exists(full), os.listdir(full)


def reliability_corpus():
    """The fuzzing findings on plot (F07 analysis files with too few scores
    or impossible example heads, F08 results without configurations or
    sequences, F23 eviction counts near 2^63): one clear error line or a
    correct figure, never a signal or a sanitizer report."""
    d = workdir()
    cases = [("F07-plot-analysis-oob/an_K1.h5", [], "impossible shape"),
             ("F07-plot-analysis-oob/an_layer.h5", [], "example layer 100000"),
             ("F07-plot-analysis-oob/an_head.h5", [], "head -5"),
             ("F07-plot-analysis-oob/an_Tneg.h5", [], "n_layers"),
             ("F08-plot-results-oob/res_C0.h5", [], "no configurations"),
             ("F08-plot-results-oob/res_S0.h5", ["--figure", "retention"], "no sequences"),
             ("F23-plot-eviction-age-int-overflow/results_huge_ages.h5", [], "damaged")]
    for i, (path, extra, words) in enumerate(cases):
        out = os.path.join(d, f"c{i}")
        expect_clean_failure(run("plot", os.path.join(CORPUS, path), *extra, "--format", "dumb", "-o", out,
                                 check=False), words)
        assert not os.path.exists(out), path
    # the corpus file is refused as damaged (HDF5 cannot read some of its object headers), so the
    # overflow is checked on a sound results file whose eviction counts are near 2^63
    huge = simulate(d, ["h2o", "window", "a2sf"], "huge.h5")
    with h5py.File(huge, "a") as f:
        ages = f["eviction_age"]
        counts = np.zeros(ages.shape, np.int64)
        counts[:, 1:4] = 2 ** 61
        ages[...] = counts
    out = os.path.join(d, "f23")
    p = run("plot", huge, "--figure", "eviction_age", "--format", "dumb", "-o", out)
    err = p.stderr.decode()
    assert "runtime error" not in err and "Sanitizer" not in err, err
    with h5py.File(huge) as f:
        ages, policy = f["eviction_age"][:], [x.decode() for x in f["configs/policy"][:]]
        budget = [x.decode() for x in f["configs/budget"][:]]
    v = one_figure(out, "eviction_age", "eviction_age.gp")
    for label, rows in blocks(os.path.join(out, v["boxes"])):
        middle = sorted(set(budget), key=budget.index)[len(set(budget)) // 2]
        c = next(i for i in range(len(policy)) if policy[i] == label and budget[i] == middle)
        total = float(sum(float(x) for x in ages[c]))
        assert abs(rows[0][7] - total) <= 1e-9 * total, (label, rows[0][7], total)  # no wrapped sum
        assert rows[0][7] > 2.0 ** 62, rows


def bad_input():
    d = workdir()
    results, analysis = simulate(d, ["h2o"]), analyze(d)
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
    assert shutil.which("gnuplot"), "gnuplot must be installed for these tests"


main(dict(every_figure_png=every_figure_png, styles_and_series=styles_and_series,
          filters_and_labels=filters_and_labels, retention_maps=retention_maps, retention_long=retention_long,
          eviction_ages=eviction_ages,
          age_bias_stories=age_bias_stories, norms_and_heatmap=norms_and_heatmap, heatmap_long=heatmap_long,
          offline_vs_closed=offline_vs_closed,
          pdf_svg_sizes=pdf_svg_sizes, svg_and_replot=svg_and_replot, outputs_are_safe=outputs_are_safe,
          reliability_corpus=reliability_corpus, bad_input=bad_input))
