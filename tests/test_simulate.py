"""kvtrace simulate through the real command line on real stories260K traces
and on hand-built ones; results read back with h5py and csv.

usage: test_simulate.py CASE"""
import csv
import os

import h5py
import numpy as np

from helpers import MODEL, expect_clean_failure, main, run, synthetic_trace, workdir, write_trace

HERE = os.path.dirname(os.path.abspath(__file__))
TRACE = os.path.join(HERE, "..", "traces", "stories260K.h5")
PERMANENT = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv:window=4", "random"]


def simulate(*args, trace=TRACE):
    out = os.path.join(workdir(), "results.h5")
    run("simulate", *(trace if isinstance(trace, (list, tuple)) else [trace]), *args, "-o", out)
    return h5py.File(out), out


def configs(f):
    return [(p.decode(), b.decode()) for p, b in zip(f["configs/policy"][:], f["configs/budget"][:])]


def full_and_whole_budget():
    """full keeps mass 1 and error 0; a budget of the whole sequence equals full."""
    f, _ = simulate("--budget", "100%,20%", *sum([["--policy", p] for p in PERMANENT], []))
    mass, err = f["metrics/retained_mass"][:], f["metrics/output_error"][:]
    for c, (policy, budget) in enumerate(configs(f)):
        if policy == "full" or budget == "100%":
            assert np.nanmax(np.abs(mass[c] - 1)) < 1e-5, (policy, budget, np.nanmin(mass[c]))
            assert np.nanmax(err[c]) < 1e-5, (policy, budget, np.nanmax(err[c]))
        else:
            assert np.nanmean(mass[c]) < 0.999, (policy, budget)


def bounds_per_row():
    """Per unit and row: every policy's mass <= ideal's; optimal >= every
    permanent policy in total and <= ideal."""
    for layer, head in ((1, 2), (4, 0)):
        pols = PERMANENT + ["ideal", "optimal"]
        f, _ = simulate("--budget", "10%,25%", "--layers", str(layer), "--heads", str(head),
                        *sum([["--policy", p] for p in pols], []))
        curves = f["curve_retained_mass"][:]  # [C][S][T]
        cfg = configs(f)
        for budget in ("10%", "25%"):
            idx = {p: c for c, (p, b) in enumerate(cfg) if b == budget}
            ideal, optimal = curves[idx["ideal"]], curves[idx["optimal"]]
            for p, c in idx.items():
                if p in ("ideal", "full"):  # full is no B-token cache
                    continue
                ok = np.isnan(ideal) | (curves[c] <= ideal + 1e-6)
                assert ok.all(), (p, budget, np.nanmax(curves[c] - ideal))
                if p not in ("optimal", "full"):
                    total_p, total_opt = np.nansum(curves[c], axis=1), np.nansum(optimal, axis=1)
                    assert (total_p <= total_opt + 1e-5).all(), (p, budget, total_p - total_opt)
            print(f"layer {layer} head {head} {budget}: optimal/ideal total mass",
                  np.nansum(optimal) / np.nansum(ideal))


def window_monotone():
    f, _ = simulate("--policy", "window", "--budget", "4,8,16,32,64,128")
    mass = f["metrics/retained_mass"][:]  # [C][S][L][H]
    means = np.nanmean(mass, axis=(1, 2, 3))
    assert np.all(np.diff(means) >= -1e-9), means
    # per row (averaged over units), on the rows every budget reports
    curves = f["curve_retained_mass"][:]  # [C][S][T]
    step = np.diff(curves, axis=0)
    assert np.all(step[~np.isnan(step)] >= -1e-6), np.nanmin(step)


def threads_identical():
    args = ["--budget", "10%,30%", "--policy", "h2o", "--policy", "a2sf", "--policy", "random",
            "--policy", "optimal", "--policy", "snapkv:window=4", "--layers", "1,3"]
    f1, _ = simulate(*args, "--threads", "1")
    f2, _ = simulate(*args, "--threads", "2")
    f3, _ = simulate(*args, "--threads", "3")
    for key in ("metrics/retained_mass", "metrics/output_error", "metrics/ideal_overlap", "eviction_age",
                "curve_retained_mass"):
        a, b, c = f1[key][:], f2[key][:], f3[key][:]
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(a, c, equal_nan=True), key


def heads_subset():
    """--heads loads only the selected kv heads of each layer (and their query
    heads): their results equal the whole run's, bit for bit, on the recorded
    trace (chunked, compressed) and on a float16 one, for runs of neighbouring
    heads and for scattered ones; the heads left out are NaN."""
    half = os.path.join(workdir(), "half.h5")
    synthetic_trace(half, T=384, H=8, KV=4, d=16, layers=2)
    with h5py.File(half, "a") as f:
        for l in range(2):
            for name in ("q", "k", "v"):
                path = f"sequences/0000/layers/{l:03d}/{name}"
                data = f[path][:].astype(np.float16)
                del f[path]
                f[path] = data
    policies = sum([["--policy", p] for p in ("h2o", "snapkv:window=4", "vatp", "knorm", "ideal")], [])
    for trace, subsets in ((TRACE, ("1,3", "2", "0,1")), (half, ("1,3", "3"))):
        whole, _ = simulate("--budget", "20%", *policies, trace=trace)
        H = whole["metrics/retained_mass"].shape[3]
        group = H // 4
        for heads in subsets:
            part, _ = simulate("--budget", "20%", *policies, "--heads", heads, trace=trace)
            kept = [h for x in map(int, heads.split(",")) for h in range(x * group, (x + 1) * group)]
            left = [h for h in range(H) if h not in kept]
            for key in ("retained_mass", "attention_kl", "output_error", "ideal_overlap"):
                a, b = whole["metrics/" + key][:], part["metrics/" + key][:]  # [C][S][L][H]
                assert np.array_equal(a[..., kept], b[..., kept]), (trace, heads, key)
                assert np.isnan(b[..., left]).all(), (trace, heads, key)
            print(f"{os.path.basename(trace)} --heads {heads}: query heads {kept} equal the whole run's")


def stored_vs_recomputed():
    d = workdir()
    prompts = os.path.join(d, "p.txt")
    open(prompts, "w").write("Lily and Ben went to the park.\nThe cat was very hungry.\n")
    trace = os.path.join(d, "att.h5")
    run("record", MODEL, "--prompt-file", prompts, "--generate", "60", "--no-stop", "--attention", "-o", trace)
    args = ["--budget", "10,25%", "--policy", "h2o", "--policy", "a2sf", "--policy", "tova", "--policy", "ideal",
            "--policy", "optimal"]
    stored, _ = simulate(*args, "--attention", "stored", trace=trace)
    recomputed, _ = simulate(*args, "--recompute", trace=trace)
    # optimal's schedule is unique only up to tokens of negligible remaining
    # attention: rounding may reorder those (same mass), so its ages and
    # overlap are left out; its mass, KL and error are compared like the rest
    real = np.array([p.decode() != "optimal" for p in stored["configs/policy"][:]])
    for key in ("metrics/retained_mass", "metrics/attention_kl", "metrics/output_error", "metrics/ideal_overlap"):
        a, b = stored[key][:], recomputed[key][:]
        if key == "metrics/ideal_overlap":
            a, b = a[real], b[real]
        diff = np.nanmax(np.abs(a - b))
        assert diff <= 1e-5, (key, diff)
    assert np.array_equal(stored["eviction_age"][:][real], recomputed["eviction_age"][:][real])


def automatic_attention_source():
    """--attention auto (the default) recomputes stored attention when that
    reproduces it (a float32 trace: the same numbers as --recompute, bit for
    bit), and reads it when not: float16 q and k (rounded away from the
    model's float32 attention) or attention written by hand."""
    d = workdir()
    prompts = os.path.join(d, "p.txt")
    open(prompts, "w").write("Lily and Ben went to the park.\n")
    args = ["--budget", "25%", "--policy", "h2o", "--policy", "tova", "--error-stride", "1"]
    keys = ("metrics/retained_mass", "metrics/output_error", "metrics/ideal_overlap", "eviction_age")

    def same(a, b):
        return all(np.array_equal(a[k][:], b[k][:], equal_nan=True) for k in keys)
    for half, expected in (([], "--recompute"), (["--half"], "--attention=stored")):
        trace = os.path.join(d, f"att{len(half)}.h5")
        run("record", MODEL, "--prompt-file", prompts, "--generate", "40", "--no-stop", "--attention", *half,
            "-o", trace)
        auto, _ = simulate(*args, trace=trace)
        forced, _ = simulate(*args, expected, trace=trace)
        other, _ = simulate(*args, "--attention=stored" if expected == "--recompute" else "--recompute", trace=trace)
        assert same(auto, forced), (half, expected)
        if half:
            assert not same(auto, other), "float16 q, k: recomputing differs, so auto must read the stored rows"


def results_format():
    """The results file and the CSV say the same thing, shaped as FORMAT.md says."""
    f, path = simulate("--budget", "10%,20%", "--policy", "h2o", "--policy", "a2sf:alpha=0.1")
    assert f.attrs["format"] == "kvtrace-results/1" and f.attrs["mode"] == "streaming"
    longest = f["sequences/n_tokens"][:].max()
    assert f.attrs["error_stride"] == -(-longest // 128), "by default about 128 rows per sequence carry the error"
    C, S = 4, 6
    assert f["metrics/retained_mass"].shape == (C, S, 5, 8)
    assert f["configs/budget_tokens"].shape == (C, S)
    assert [p.decode() for p in f["configs/params"][:]] == ["recent=0.5"] * 2 + ["alpha=0.1,recent=0"] * 2
    T = f["sequences/n_tokens"][:]
    assert np.array_equal(f["configs/budget_tokens"][0], np.maximum(1, np.floor(0.1 * T + 0.5)).astype(int))
    rows = list(csv.DictReader(open(path[:-3] + ".csv")))
    assert len(rows) == C * (5 * 8 + 1), len(rows)
    assert {r["mode"] for r in rows} == {"streaming"} and {r["model"] for r in rows} == {"stories260K"}
    assert {r["trace"] for r in rows} == {TRACE}
    overall = [r for r in rows if r["layer"] == "" and r["head"] == ""]  # overall rows: empty layer and head
    assert len(overall) == C
    assert all(int(r["layer"]) in range(5) and int(r["head"]) in range(8) for r in rows if r["layer"])
    with open(TRACE, "rb") as fh:
        import hashlib
        assert f.attrs["trace_sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert f.attrs["model_sha256"] == h5py.File(TRACE).attrs["model_sha256"]
    for c, r in enumerate(overall):
        assert abs(float(r["retained_mass"]) - f["summary/retained_mass_mean"][c]) < 1e-6
    h2o = [r for r in rows if r["policy"] == "h2o" and r["budget"] == "10%" and r["layer"] == "3" and r["head"] == "5"][0]
    assert abs(float(h2o["retained_mass"]) - np.mean(f["metrics/retained_mass"][0, :, 3, 5])) < 1e-6
    hist = f["eviction_age"][:]
    assert hist.shape[0] == C and hist.sum() > 0


def hand_built_trace():
    """A trace written by hand with h5py (stored attention), replayed through
    the CLI: H2O and A2SF evict as worked out in test_policies.c (h2o case)."""
    path = os.path.join(workdir(), "hand.h5")
    rows = [[1.0], [0.3, 0.7], [0.2, 0.5, 0.3], [0.1, 0.2, 0.3, 0.4]]
    T = 4
    att = np.zeros((1, 1, T, T), np.float32)
    for t, r in enumerate(rows):
        att[0, 0, t, :t + 1] = r
    write_trace(path, np.zeros((1, T, 1, 2)), np.zeros((1, T, 1, 2)), attention=att,
                k_norm=np.array([[[1], [5], [2], [3]]]))
    f, _ = simulate("--budget", "2", "--policy", "h2o:recent=0", "--policy", "a2sf:alpha=0.2", "--policy", "knorm",
                    "--retention", "0:0", trace=path)
    ret = f["retention"][:]  # [C][T][T]
    assert list(ret[0, 3]) == [1, 0, 0, 1], ret[0]          # h2o: evicts 1 then 2
    assert list(ret[1, 2]) == [0, 1, 1, 0], ret[1]          # a2sf: evicts 0 first
    assert list(ret[2, 3]) == [1, 0, 0, 1], ret[2]          # knorm: highest norms 5 then 2
    mass = f["metrics/retained_mass"][:]
    assert abs(mass[0, 0, 0, 0] - 0.5) < 1e-6, mass[0]       # rows 2, 3 keep 0.5 each


def prefill_and_layer_granularity():
    f, _ = simulate("--prefill", "--budget", "50%,100%", "--policy", "h2o", "--policy", "snapkv:window=4",
                    "--policy", "knorm", "--policy", "ideal")
    assert f.attrs["mode"] == "prefill"
    P = f["sequences/n_prompt"][:]
    assert np.array_equal(f["configs/budget_tokens"][0], np.floor(0.5 * P + 0.5).astype(int))
    mass = f["metrics/retained_mass"][:]
    cfg = configs(f)
    for c, (p, b) in enumerate(cfg):
        assert np.nanmax(mass[c]) <= 1 + 1e-6 and np.nanmin(mass[c]) > 0
    g, _ = simulate("--granularity", "layer", "--budget", "20%", "--policy", "h2o", "--policy", "a2sf",
                    "--policy", "ideal")
    assert g.attrs["granularity"] == "layer"
    m = g["metrics/retained_mass"][:]
    assert not np.isnan(m).any() and (m <= 1 + 1e-6).all()
    assert np.nanmean(m[2]) >= np.nanmean(m[0]) and np.nanmean(m[2]) >= np.nanmean(m[1])


def defaults_fit_small_budgets():
    """SnapKV's default window (32) and StreamingLLM's and VATP's default sinks
    (4) leave no room at small budgets: they shrink to half the room, once per
    configuration, said on stderr and recorded in the results' params; the
    run equals one that gives the shrunk values explicitly."""
    d = workdir()
    out = os.path.join(d, "fit.h5")
    p = run("simulate", TRACE, "--policy", "snapkv", "--policy", "streaming", "--policy", "vatp", "--budget", "10%,40%",
            "--budget", "4", "-o", out)
    notes = [l for l in p.stderr.decode().splitlines() if "defaults shrink to fit" in l]
    # 10 % of the shortest stories260K sequence is 23 tokens: window 32 -> 11; at 4 tokens window 2, sinks 2 and 1
    assert len(notes) == 4, notes
    assert any("snapkv:window=32,kernel=5 leaves no room to evict at budget 23 tokens; using snapkv:window=11" in n
               for n in notes), notes
    with h5py.File(out) as f:
        params = {(p.decode(), b.decode()): q.decode()
                  for p, b, q in zip(f["configs/policy"][:], f["configs/budget"][:], f["configs/params"][:])}
        mass = f["metrics/retained_mass"][:]
    assert params[("snapkv", "10%")] == "window=11,kernel=5", params
    assert params[("snapkv", "40%")] == "window=32,kernel=5", params
    assert params[("snapkv", "4")] == "window=2,kernel=5", params
    assert params[("streaming", "4")] == "sink=2" and params[("streaming", "10%")] == "sink=4", params
    assert params[("vatp", "4")] == "base=h2o,alpha=0.2,recent=0.5,sink=1", params
    # pyramid gives the deepest layer 1 token at 10 %: the defaults are fitted to that layer's budget
    pyramid = os.path.join(d, "pyramid.h5")
    p = run("simulate", TRACE, "--policy", "streaming", "--policy", "quest", "--allocation", "pyramid", "--budget",
            "10%", "-o", pyramid)
    notes = [l for l in p.stderr.decode().splitlines() if "defaults shrink to fit" in l]
    assert any(n.startswith("kvtrace: pyramid:beta=20: streaming:sink=4 leaves no room to evict at budget 1 tokens; "
                            "using streaming:sink=0") for n in notes), notes
    with h5py.File(pyramid) as f:
        assert [q.decode() for q in f["configs/params"][:]] == ["sink=0", "page=1"], f["configs/params"][:]
    explicit = os.path.join(d, "explicit.h5")
    run("simulate", TRACE, "--policy", "snapkv:window=11", "--budget", "10%", "-o", explicit)
    with h5py.File(explicit) as f:
        assert np.array_equal(f["metrics/retained_mass"][:][0], mass[0], equal_nan=True)


def fails(args, mention, trace=TRACE):
    out = os.path.join(workdir(), "r.h5")
    p = run("simulate", *(trace if isinstance(trace, list) else [trace]), *args, "-o", out, check=False)
    line = expect_clean_failure(p)
    assert mention in line, (mention, line)
    assert not os.path.exists(out) and not os.path.exists(out[:-3] + ".csv"), "partial results left behind"


def bad_input():
    fails(["--policy", "lru"], "unknown policy 'lru'")
    fails(["--policy", "h2o:alpha=0.3"], "no parameter 'alpha'")
    fails(["--policy", "a2sf:alpha=2"], "alpha")
    fails(["--budget", "0"], "at least 1")
    fails(["--budget", "5000"], "larger than sequence")
    fails(["--budget", "ten"], "not a number")
    fails(["--policy", "snapkv:window=32", "--budget", "10"], "no room")  # given by the user: never shrunk
    fails(["--policy", "streaming:sink=10", "--budget", "10"], "no room")
    fails(["--layers", "9"], "layer 9 does not exist")
    fails([], "missing.h5", trace="missing.h5")
    d = workdir()
    # retention maps are C x T x T bytes: 5 x 33000^2 would be 5 GiB, refused before any work
    rng = np.random.default_rng(3)
    long = write_trace(os.path.join(d, "long.h5"), rng.normal(size=(1, 33000, 1, 2)), rng.normal(size=(1, 33000, 1, 2)))
    fails(["--policy", "h2o", "--budget", "1%,2%,3%,4%,5%", "--retention", "0:0"], "5.1 GiB of maps", trace=long)
    no_v = os.path.join(d, "nov.h5")
    run("record", MODEL, "--tokens", "1,403,407,261,378,432,383,286,261,376", "-o", no_v)
    with h5py.File(no_v, "a") as f:
        for l in range(5):
            del f[f"sequences/0000/layers/{l:03d}/v"]
    fails(["--budget", "4", "--policy", "h2o"], "stores no values", trace=no_v)
    out = os.path.join(d, "ok.h5")
    run("simulate", no_v, "--budget", "4", "--policy", "h2o", "--error-stride", "0", "-o", out)
    partial = os.path.join(d, "partial.h5")
    run("record", MODEL, "--tokens", "1", "--generate", "300", "--no-stop", "-o", partial,
        env={"KVTRACE_TEST_SIGNAL": "INT:200"}, check=False)
    fails(["--budget", "4"], "incomplete", trace=partial)
    run("simulate", partial, "--budget", "4", "--policy", "h2o", "--allow-incomplete", "-o", out, "--force")
    other = os.path.join(d, "other.h5")
    run("record", MODEL, "--tokens", "1,403,407,261,378,432", "-o", other)
    with h5py.File(other, "a") as f:
        f.attrs["model_sha256"] = "0" * 64
    fails(["--budget", "4"], "mismatched traces", trace=[TRACE, other])


def pyramid_budget(L, layer, B, w, beta):
    """The pyramid formula of docs/semantics.md, written again here: m = (B - w)/beta, M = 2(B - w) - m."""
    if L == 1:
        return B
    m = (B - w) / beta
    M = 2 * (B - w) - m
    return w + int(np.floor(M - layer * (M - m) / (L - 1) + 0.5))


def allocations():
    """--allocation: uniform equals no allocation; pyramid holds each layer's
    budget; adaptive shares a layer's pool (never above KV*B) and is refused
    for scores that are not attention mass; the allocation is a config field."""
    base, _ = simulate("--budget", "20%", "--policy", "h2o", "--policy", "quest:page=4", "--error-stride", "3")
    mass = base["metrics/retained_mass"][:]
    for layer in (0, 4):
        f, path = simulate("--budget", "20%", "--policy", "h2o", "--policy", "quest:page=4", "--error-stride", "3",
                           "--allocation", "uniform", "--allocation", "pyramid:beta=4", "--allocation", "adaptive",
                           "--retention", f"{layer}:1")
        alloc = [a.decode() for a in f["configs/allocation"][:]]
        assert alloc == ["uniform", "pyramid:beta=4", "adaptive:floor=0.2"] * 2 or alloc[:3] == [
            "uniform", "pyramid:beta=4", "adaptive:floor=0.2"], alloc
        policies = [p.decode() for p in f["configs/policy"][:]]
        assert policies == ["h2o"] * 3 + ["quest"] * 2, policies  # quest: no adaptive (not attention mass)
        got = f["metrics/retained_mass"][:]
        assert np.array_equal(got[0], mass[0], equal_nan=True) and np.array_equal(got[3], mass[1], equal_nan=True)
        T = f["sequences/n_tokens"][0]
        B = int(np.floor(0.2 * T + 0.5))
        held = f["retention"][:].sum(axis=2)  # [C][T0] tokens held per step
        want = pyramid_budget(5, layer, B, int(np.floor(0.5 * B + 0.5)), 4)  # h2o's w: recent = 0.5 B
        assert held[1].max() == min(want, T), (layer, held[1].max(), want)
        assert held[0].max() == B and held[2].max() >= 1
        rows = list(csv.DictReader(open(path[:-3] + ".csv")))
        assert {r["allocation"] for r in rows} == set(alloc)
    # adaptive holds at most KV*B per layer: the pool, shared by the layer's kv heads
    f, _ = simulate("--budget", "16", "--policy", "h2o", "--allocation", "adaptive:floor=0", "--layers", "2",
                    "--retention", "2:0", "--error-stride", "0")
    one = f["retention"][0].sum(axis=1)
    assert one.max() > 16, "with floor 0 one kv head may hold more than B"
    fails(["--policy", "window", "--allocation", "adaptive"], "comparable")
    fails(["--policy", "h2o", "--allocation", "pyramid:beta=0"], "beta")
    fails(["--policy", "h2o", "--allocation", "lifo"], "unknown allocation")
    fails(["--policy", "streaming:sink=4", "--budget", "16", "--allocation", "pyramid"], "no room")  # given: never shrunk
    # the parameter list comes from each policy's own table
    listing = run("simulate", "--list").stdout.decode()
    for line in ("quest (cost per step", "  page    default 16", "scissorhands (cost per step", "  window  default 32",
                 "  alpha   default 0.2   number in [0, 1)", "  base    default h2o   one of h2o|a2sf"):
        assert line in listing, (line, listing)
    # one unit per layer: adaptive is uniform
    a, _ = simulate("--budget", "20%", "--policy", "h2o", "--granularity", "layer", "--allocation", "adaptive",
                    "--error-stride", "0")
    u, _ = simulate("--budget", "20%", "--policy", "h2o", "--granularity", "layer", "--error-stride", "0")
    assert np.array_equal(a["metrics/retained_mass"][:], u["metrics/retained_mass"][:], equal_nan=True)


def optimal_memory_refused():
    """optimal's staircase takes about 4 T^2 bytes per unit: a sequence whose
    staircase is twice the memory this machine has available (MemAvailable) is
    refused at once, before any attention is read, with the sizes named and
    nothing written; the kernel would otherwise kill the run midway."""
    import math
    import time
    available = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable:"))
    T = int(math.sqrt(available / 2))
    rng = np.random.default_rng(5)
    trace = write_trace(os.path.join(workdir(), "long.h5"), rng.normal(size=(1, T, 1, 4)), rng.normal(size=(1, T, 1, 4)))
    start = time.monotonic()
    fails(["--policy", "h2o", "--policy", "optimal", "--budget", "1%"], "optimal needs about", trace=trace)
    fails(["--policy", "optimal", "--budget", "1%", "--threads", "2"], f"for a {T}-token unit", trace=trace)
    assert time.monotonic() - start < 30, "refused only after working"
    print(f"{T} tokens: refused ({available / 1e9:.1f} GB available)")


main({f.__name__: f for f in (full_and_whole_budget, bounds_per_row, window_monotone, threads_identical, heads_subset,
                              stored_vs_recomputed, automatic_attention_source, results_format, hand_built_trace,
                              prefill_and_layer_granularity, bad_input, defaults_fit_small_budgets, allocations,
                              optimal_memory_refused)})
