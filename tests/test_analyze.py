"""kvtrace analyze on hand-built traces whose numbers are worked out here,
and on the stories260K traces recorded from the real model."""
import os

import h5py
import numpy as np

from helpers import expect_clean_failure, main, run, workdir, write_trace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(REPO, "traces", "stories260K.h5")


def analyze(trace, *args):
    out = os.path.join(workdir(), "analysis.h5")
    p = run("analyze", trace, "-o", out, *args)
    return h5py.File(out), p.stdout.decode()


def ranks(v):
    """1-based ranks, ties sharing their average rank."""
    v = np.asarray(v)
    return np.array([np.sum(v < x) + (np.sum(v == x) + 1) / 2 for x in v])


def spearman(x, y):
    return np.corrcoef(ranks(np.asarray(x)), ranks(np.asarray(y)))[0, 1]


def softmax_rows(q, k):
    """Causal attention of one head, [T][T], zeros above the diagonal."""
    s = q @ k.T / np.sqrt(q.shape[1])
    s[np.triu_indices(len(q), 1)] = -np.inf
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def uniform_closed_form():
    """q = 0 makes every row uniform, a_t(i) = 1/(t+1), so the end scores have
    closed forms: H2O = sum_{t>=i} 1/(t+1) over T-i rows, A2SF = sum alpha^(T-1-t)/(t+1);
    each is strictly larger for older tokens (Spearman with age = 1), and any
    dropped key costs the same, so the attention-loss ratio is exactly 1."""
    T, B = 12, 3
    rng = np.random.default_rng(3)
    path = write_trace(os.path.join(workdir(), "uniform.h5"), np.zeros((1, T, 2, 4)), rng.normal(size=(1, T, 1, 4)))
    f, report = analyze(path, "--alpha", "0.2,0.5", "--budget-fraction", str(B / T), "--example", "0:1",
                        "--bootstrap", "50")
    assert list(f["age_bias/scores"].asstr()[:]) == ["h2o", "accumulations", "mean_attention", "a2sf_0.2",
                                                     "a2sf_0.5"]
    t = np.arange(T)
    h2o = np.array([np.sum(1 / (t[i:] + 1)) for i in range(T)])
    a2sf = [np.array([np.sum(alpha ** (T - 1 - t[i:]) / (t[i:] + 1)) for i in range(T)]) for alpha in (0.2, 0.5)]
    curves = f["age_bias/example_head"][:]
    assert np.allclose(curves[0], h2o, rtol=1e-5), (curves[0], h2o)
    assert np.array_equal(curves[1], T - t)
    assert np.allclose(curves[2], h2o / (T - t), rtol=1e-5)
    assert np.allclose(curves[3], a2sf[0], rtol=1e-5) and np.allclose(curves[4], a2sf[1], rtol=1e-5)
    assert np.allclose(f["age_bias/spearman"][0, 0, :, :], 1.0), f["age_bias/spearman"][:]
    # top-B: the running H2O sums rank the oldest tokens first; ties (ideal) go to the oldest too
    expected = np.mean([np.mean([(r - i) / r for i in range(B)]) for r in range(B, T)])
    rel = f["top_b/relative_age"][0, 0, 0]
    assert np.allclose(rel, expected, rtol=1e-6), (rel, expected)
    for name in ("loss_by_norm", "loss_least_attended", "loss_random"):
        loss = f["key_norm/" + name][0, 0, 0]
        assert abs(loss - f["key_norm/loss_random"][0, 0, 0]) < 1e-6, (name, loss)
    assert abs(f["key_norm"].attrs["alr"] - 1.0) < 1e-5, f["key_norm"].attrs["alr"]
    assert "H2O score" in report and "ALR 1.00" in report, report


def alr_tiny():
    """Four keys, one head: the attention lost by dropping the highest-norm keys
    vs the least-attended ones, row by row, worked out with numpy."""
    q = np.array([[1.0, 0.0], [0.5, 1.0], [2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    k = np.array([[3.0, 0.0], [0.1, 0.2], [0.0, 2.0], [-1.0, 1.0], [0.5, -0.5]])
    v = np.array([[1.0, -2.0], [0.5, 0.5], [3.0, 1.0], [-1.0, 0.0], [2.0, 2.0]])
    T = len(q)
    path = write_trace(os.path.join(workdir(), "tiny.h5"), q[None, :, None, :], k[None, :, None, :],
                       v[None, :, None, :])
    f, _ = analyze(path, "--drop-fraction", "0.5", "--example", "0:0", "--bootstrap", "0", "--sink-tokens", "1",
                   "--sink-attention", "0.9")
    a = softmax_rows(q, k)
    norms = np.linalg.norm(k, axis=1)
    lost_norm, lost_least, rows = 0.0, 0.0, 0
    for t in range(T):
        drop = int(0.5 * (t + 1))
        if drop < 1:
            continue
        by_norm = np.argsort(-norms[:t + 1], kind="stable")[:drop]
        lost_norm += a[t, by_norm].sum()
        lost_least += np.sort(a[t, :t + 1])[:drop].sum()
        rows += 1
    got_norm, got_least = f["key_norm/loss_by_norm"][0, 0, 0], f["key_norm/loss_least_attended"][0, 0, 0]
    assert abs(got_norm - lost_norm / rows) < 1e-5, (got_norm, lost_norm / rows)
    assert abs(got_least - lost_least / rows) < 1e-5, (got_least, lost_least / rows)
    assert abs(f["key_norm"].attrs["alr"] - lost_norm / lost_least) < 1e-4
    mean_attention = a.sum(axis=0) / (T - np.arange(T))
    assert abs(f["key_norm/spearman"][0, 0, 0] - spearman(norms, mean_attention)) < 1e-9
    v_l1 = np.abs(v).sum(axis=1)
    assert abs(f["value_norm/spearman"][0, 0, 0] - spearman(v_l1, mean_attention)) < 1e-9
    # sinks: position 0, plus tokens averaging >= 0.9 attention over at least 16 rows (none here)
    sinks = (np.arange(T) < 1) | ((T - np.arange(T) >= 16) & (mean_attention >= 0.9))
    ratio = v_l1[sinks].mean() / v_l1[~sinks].mean()
    assert abs(f["value_norm/sink_value_ratio"][0, 0, 0] - ratio) < 1e-5
    assert np.allclose(f["key_norm/example_mean_attention"][:], mean_attention, rtol=1e-5)
    assert np.isnan(f["age_bias/spearman_pooled"][0, 1]), "no bootstrap, no interval"


def stories_age_bias():
    """The seed paper's effect on the real model's traces: the H2O score grows
    with age, A2SF's (alpha <= 0.5) does not, and H2O's top-B set is older."""
    f, report = analyze(STORIES, "--bootstrap", "300")
    names = list(f["age_bias/scores"].asstr()[:])
    pooled = f["age_bias/spearman_pooled"][:]
    h2o = pooled[names.index("h2o")]
    print(report)
    assert h2o[0] > 0.1 and h2o[1] > 0, f"H2O score vs age: {h2o}"
    for alpha in ("0.1", "0.2", "0.5"):
        a2sf = pooled[names.index("a2sf_" + alpha)]
        assert h2o[1] > a2sf[2], f"H2O {h2o} must exceed A2SF alpha={alpha} {a2sf} beyond both intervals"
    methods = list(f["top_b/methods"].asstr()[:])
    rel = f["top_b/relative_age_pooled"][:, 0]
    assert rel[methods.index("h2o")] > rel[methods.index("a2sf_0.2")] + 0.1, rel
    assert rel[methods.index("h2o")] > rel[methods.index("ideal")] + 0.1, rel
    S, L, H = f.attrs["n_sequences"], f.attrs["n_layers"], f.attrs["n_heads"]
    assert f["age_bias/spearman"].shape == (S, L, H, len(names))
    assert f["age_bias/spearman_layer_head"].shape == (L, H, len(names), 3)
    assert f["value_norm/by_position"].shape == (L, f["sequences/n_tokens"][0])
    assert f.attrs["format"] == "kvtrace-analysis/1"
    assert np.all(np.isfinite(f["key_norm/spearman"][:]))


def bad_input():
    d = workdir()
    out = os.path.join(d, "a.h5")
    expect_clean_failure(run("analyze", os.path.join(d, "missing.h5"), "-o", out, check=False), "missing.h5")
    junk = os.path.join(d, "junk.h5")
    with open(junk, "w") as fh:
        fh.write("not hdf5")
    expect_clean_failure(run("analyze", junk, "-o", out, check=False), "junk.h5")
    expect_clean_failure(run("analyze", STORIES, "--alpha", "1.5", "-o", out, check=False), "--alpha")
    expect_clean_failure(run("analyze", STORIES, "--example", "99:0", "-o", out, check=False), "layer 99")
    expect_clean_failure(run("analyze", STORIES, check=False), "-o")
    expect_clean_failure(run("analyze", STORIES, "-o", "/proc/no/such/dir/a.h5", check=False), "a.h5")
    assert not os.path.exists(out)
    partial = os.path.join(d, "partial.h5")
    write_trace(partial, np.zeros((1, 6, 1, 2)), np.ones((1, 6, 1, 2)))
    with h5py.File(partial, "a") as fh:
        fh["sequences/0000"].attrs["complete"] = 0
        fh.attrs["complete"] = 0
    expect_clean_failure(run("analyze", partial, "-o", out, check=False), "incomplete")
    run("analyze", partial, "--allow-incomplete", "-o", out, "--bootstrap", "10")
    assert h5py.File(out).attrs["n_sequences"] == 1


def all_datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        if a[key].dtype.kind in "fiu":
            assert np.array_equal(a[key], b[key], equal_nan=True), key
        else:
            assert list(a[key]) == list(b[key]), key


def threads_identical():
    """Heads run on worker threads with the bootstrap stream split by head:
    1, 2 and 3 threads give the same analysis, bit for bit."""
    from helpers import synthetic_trace
    d = workdir()
    long = synthetic_trace(os.path.join(d, "long.h5"), T=700, H=6, KV=3)
    for trace, args in ((STORIES, ["--bootstrap", "60"]), (long, ["--bootstrap", "20", "--example", "0:4"])):
        runs = []
        for threads in (1, 2, 3):
            out = os.path.join(d, f"a{threads}.h5")
            run("analyze", trace, "--threads", threads, "-o", out, "--force", *args)
            runs.append(all_datasets(out))
        assert_same(runs[0], runs[1])
        assert_same(runs[0], runs[2])


def sanitized():
    """ASan reserves terabytes of address space: no RLIMIT_AS under it."""
    with open(os.environ["KVTRACE"], "rb") as fh:
        return b"libasan.so" in fh.read()


def bounded_memory():
    """A 10000-token head, whose T x T attention (400 MB) could not exist in
    the 350 MB of address space the test allows (the libraries alone take
    about 300 MB of it): analyze streams its rows and gives the same results
    as an unlimited run with another thread count.
    Under AddressSanitizer, which cannot run in a small address space, the
    peak resident memory must stay below the T x T size instead."""
    import resource
    import subprocess
    T, limit = 10000, 350 << 20
    d = workdir()
    rng = np.random.default_rng(11)
    trace = write_trace(os.path.join(d, "long.h5"), rng.normal(size=(1, T, 1, 8)), rng.normal(size=(1, T, 1, 8)),
                        rng.normal(size=(1, T, 1, 8)))
    free_run = os.path.join(d, "free.h5")
    args = ["--bootstrap", "5", "--alpha", "0.5"]
    run("analyze", trace, *args, "--threads", "2", "-o", free_run)
    bounded = os.path.join(d, "bounded.h5")
    asan = sanitized()

    def limit_memory():
        if not asan:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = subprocess.run([os.environ["KVTRACE"], "analyze", trace, *args, "--threads", "1", "-o", bounded],
                       preexec_fn=limit_memory, capture_output=True, timeout=100)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"peak resident memory {peak / 2**20:.0f} MB (T x T would be {T * T * 4 / 2**20:.0f} MB)"
          f"{'' if asan else f', address space limited to {limit >> 20} MB'}")
    assert before * 1024 < T * T * 4 and peak < T * T * 4
    assert_same(all_datasets(free_run), all_datasets(bounded))


PER_HEAD = ["age_bias/spearman", "top_b/relative_age", "top_b/age_share", "key_norm/spearman", "key_norm/loss_by_norm",
            "key_norm/loss_least_attended", "key_norm/loss_random", "value_norm/spearman",
            "value_norm/sink_value_ratio", "value_norm/attention_sinks"]


def assert_cells(full, part, layers, heads):
    """part's per-head cells equal full's for the heads analysed; the others are NaN (attention_sinks -1)."""
    for key in PER_HEAD:
        a, b = full[key], part[key]
        wanted = np.zeros(b.shape[:3], bool)
        for l in layers:
            wanted[:, l, heads] = True
        assert np.array_equal(a[wanted], b[wanted], equal_nan=True), key
        assert np.all(b[~wanted] == -1) if key.endswith("attention_sinks") else np.all(np.isnan(b[~wanted])), key


def heads_subset():
    """--layers 3,1 --heads 2,5 analyses 4 of stories260K's 40 heads: each gets
    the very numbers (and bootstrap draws) of a run over every head, the
    others are NaN, the pooled figures, the CSV, the report and the figures
    are over those 4, and any thread count gives the same file.  On a GQA
    trace, one head loads only its kv head and still equals the full run."""
    from helpers import synthetic_trace
    d = workdir()
    full_path, part_paths = os.path.join(d, "full.h5"), [os.path.join(d, f"part{n}.h5") for n in (1, 3)]
    run("analyze", STORIES, "--bootstrap", "60", "--example", "1:2", "--threads", "2", "-o", full_path)
    report = None
    for threads, path in zip((1, 3), part_paths):
        p = run("analyze", STORIES, "--bootstrap", "60", "--layers", "3,1", "--heads", "2,5", "--threads", threads,
                "-o", path)
        report = report or p.stdout.decode()
    full, part = all_datasets(full_path), all_datasets(part_paths[0])
    assert_same(part, all_datasets(part_paths[1]))
    assert_cells(full, part, [1, 3], [2, 5])
    with h5py.File(part_paths[0]) as f:
        attrs = dict(f.attrs)
    assert (attrs["layers"], attrs["heads"]) == ("1,3", "2,5"), attrs
    # the default example: the analysed layer nearest the middle (2), the lower on a tie, its first analysed head
    assert (attrs["example_layer"], attrs["example_head"]) == (1, 2)
    assert np.array_equal(part["age_bias/example_head"], full["age_bias/example_head"])
    # pooled over the 4 heads: the layer-2 row is NaN, layer 1's mean is the mean of its 2 heads' cells
    assert np.all(np.isnan(part["age_bias/spearman_layer"][[0, 2, 4]]))
    assert np.allclose(part["age_bias/spearman_layer"][1, :, 0], np.mean(full["age_bias/spearman"][:, 1, [2, 5]], axis=(0, 1)))
    # value norms by position: layers analysed only, the mean over the kv heads loaded (1 and 2)
    with h5py.File(STORIES) as t:
        for l in range(5):
            row = part["value_norm/by_position"][l]
            if l in (1, 3):
                v = t[f"sequences/0000/layers/{l:03d}/v_norm_l1"][:].astype(np.float32)
                assert np.allclose(row, (v[:, 1] + v[:, 2]) / 2, rtol=1e-6), l
            else:
                assert np.all(np.isnan(row)), l
    rows = open(part_paths[0][:-3] + ".csv").read().splitlines()[1:]
    assert [tuple(r.split(",")[2:4]) for r in rows] == [("1", "2"), ("1", "5"), ("3", "2"), ("3", "5")], rows
    assert "Analysed: layers 1,3, heads 2,5 (4 of the 40 heads)" in report, report
    figures = os.path.join(d, "figures")
    run("plot", part_paths[0], "-o", figures)
    replot = open(os.path.join(figures, "replot.sh")).read()
    assert "over the 4 heads analysed" in replot and "mean of 2 x 2 heads" in replot, replot
    out = os.path.join(d, "bad.h5")
    expect_clean_failure(run("analyze", STORIES, "--layers", "1,7", "-o", out, check=False), "no layer 7")
    expect_clean_failure(run("analyze", STORIES, "--heads", "2", "--example", "0:1", "-o", out, check=False),
                         "--example 0:1 is not among the heads analysed")
    assert not os.path.exists(out)
    # GQA: query head 4 of 6 uses kv head 2 of 3, the only one read.  With one sequence a head's
    # intervals are its own bootstrap replicates: equal, so the head drew what the full run drew
    long = synthetic_trace(os.path.join(d, "long.h5"), T=600, H=6, KV=3, layers=3)
    run("analyze", long, "--bootstrap", "20", "--example", "1:4", "-o", full_path, "--force")
    for threads in (1, 2):
        run("analyze", long, "--bootstrap", "20", "--layers", "1", "--heads", "4", "--threads", threads, "-o",
            part_paths[0], "--force")
        full, part = all_datasets(full_path), all_datasets(part_paths[0])
        assert_cells(full, part, [1], [4])
        for key in ("age_bias/spearman_layer_head", "key_norm/spearman_layer_head"):
            assert np.array_equal(full[key][1, 4], part[key][1, 4]) and not np.isnan(part[key][1, 4]).any(), key


main(dict(uniform_closed_form=uniform_closed_form, alr_tiny=alr_tiny, stories_age_bias=stories_age_bias,
          bad_input=bad_input, threads_identical=threads_identical, bounded_memory=bounded_memory,
          heads_subset=heads_subset))
