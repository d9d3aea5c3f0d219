"""kvtrace eval with the real model: the full cache reproduced exactly, a
whole-text budget equal to full, the same evictions as simulate, the ΔNLL
table on stories260K, and bad input."""
import csv
import os

import h5py
import numpy as np

from helpers import MODEL, expect_clean_failure, main, run, workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = os.path.join(REPO, "texts", "stories.txt")
REAL = ["full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova", "snapkv:window=8", "random"]


def evaluate(*args, texts=("--text-file", TEXTS)):
    d = workdir()
    out = os.path.join(d, "eval.h5")
    p = run("eval", MODEL, *texts, *args, "--threads", "2", "-o", out)
    return h5py.File(out), out, p.stdout.decode()


def config(f, policy, budget):
    pol, bud = list(f["configs/policy"].asstr()[:]), list(f["configs/budget"].asstr()[:])
    return next(c for c in range(len(pol)) if pol[c] == policy and bud[c] == budget)


def full_is_exact():
    """`full` in the loop, and any policy with a budget >= the text length,
    give the full cache's NLL exactly (ΔNLL 0, KL 0, top-1 1, greedy all)."""
    f, _, _ = evaluate("--policy", "full", "--policy", "h2o", "--policy", "a2sf", "--policy", "knorm",
                       "--budget", "20%,100%", "--generate", "16")
    T = f["texts/n_tokens"][:]
    assert np.array_equal(f["configs/budget_tokens"][config(f, "h2o", "100%")], T)
    nll, nll_full = f["metrics/nll"][:], f["metrics/nll_full"][:]
    for policy in ("full", "h2o", "a2sf", "knorm"):
        for budget in ("20%", "100%") if policy == "full" else ("100%",):
            c = config(f, policy, budget)
            assert np.array_equal(nll[c], nll_full[c]), (policy, budget, nll[c] - nll_full[c])
            assert np.all(f["metrics/kl"][c] == 0) and np.all(f["metrics/top1_agreement"][c] == 1)
            if policy == "full":  # (a budget of T still evicts during the greedy continuation)
                assert np.all(f["metrics/greedy_agreement"][c] == 16)
    # the full-cache NLL is the model's: it matches the recorded trace's nll to float rounding
    trace = h5py.File(f.attrs["trace"])
    c = config(f, "full", "100%")
    for s in range(len(T)):
        recorded = trace[f"sequences/{s:04d}/nll"][:-1].astype(np.float64).mean()
        assert abs(recorded - nll_full[c, s]) < 1e-4, (s, recorded, nll_full[c, s])
    # and pruning does change it
    c = config(f, "h2o", "20%")
    assert np.all(f["metrics/delta_nll"][c] != 0)


def same_evictions_as_simulate():
    """Layer 0's queries and keys do not depend on the cache (its input is the
    token embedding), so there the closed loop observes exactly the rows the
    offline replay computes: the policy objects must hold the same tokens at
    every step in eval and in simulate, under every allocation (adaptive:
    the layer's units evicting jointly), and quest must select the same pages."""
    policies = ["h2o", "a2sf", "knorm", "tova", "window", "vatp", "scissorhands:window=8", "quest:page=4"]
    args = [a for p in policies for a in ("--policy", p)]
    args += ["--allocation", "uniform", "--allocation", "pyramid:beta=4", "--allocation", "adaptive"]
    f, out, _ = evaluate(*args, "--budget", "15%", "--retention", "0:1")
    results = os.path.join(workdir(), "sim.h5")
    run("simulate", f.attrs["trace"], *args, "--budget", "15%", "--retention", "0:1", "-o", results)
    closed, offline = f["retention"][:], h5py.File(results)["retention"][:]
    assert closed.shape == offline.shape, (closed.shape, offline.shape)
    names = [f"{p} {a}" for p, a in zip(f["configs/policy"].asstr()[:], f["configs/allocation"].asstr()[:])]
    assert len(names) == 3 * len(policies) - 3, names  # knorm, window and quest take no adaptive allocation
    for c, name in enumerate(names):
        differ = np.argwhere(closed[c] != offline[c])
        assert len(differ) == 0, f"{name}: first difference at step/token {differ[0]}"
        assert closed[c].sum() < closed[c].shape[0] * (closed[c].shape[0] + 1) / 2, f"{name} never evicted"


def stories_table():
    """The ΔNLL table at 10/20/40 % for every real policy on the hand-written
    stories and on the model's own sampled stories, with the rank correlation."""
    for texts in (("--text-file", TEXTS),
                  ("--prompt-file", os.path.join(REPO, "traces", "prompts.txt"), "--sample", "150")):
        args = [a for p in REAL for a in ("--policy", p)]
        f, out, table = evaluate(*args, "--budget", "10%,20%,40%", texts=texts)
        print(table)
        with open(out[:-3] + ".csv") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 3 * len(REAL)
        by = {(r["policy"], r["budget"]): float(r["delta_nll"]) for r in rows}
        for p in REAL[1:]:
            name = p.split(":")[0]
            assert by[(name, "10%")] > 0, (name, by[(name, "10%")])
            assert by[(name, "10%")] > by[(name, "40%")], name  # more cache, less damage
        assert by[("random", "10%")] > by[("a2sf", "10%")], "random must hurt more than a2sf"
        rho = f.attrs["rank_correlation"]
        assert 0.5 < rho <= 1.0, rho
        assert f.attrs["format"] == "kvtrace-eval/1"
    # the closed-loop figures, through real gnuplot
    figures = os.path.join(os.path.dirname(out), "figures")
    run("plot", out, "-o", figures)
    for name in ("nll", "offline_vs_closed"):
        path = os.path.join(figures, name + ".png")
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", path
        assert os.path.getsize(path) > 15000, path
        with open(os.path.join(figures, "data", name + ".log")) as fh:
            log = fh.read().lower()
        assert "error" not in log and "warning" not in log, log


def bad_input():
    d = workdir()
    out = os.path.join(d, "e.h5")
    expect_clean_failure(run("eval", MODEL, "--text-file", TEXTS, "--policy", "optimal", "-o", out, check=False),
                         "optimal")
    expect_clean_failure(run("eval", MODEL, "-o", out, check=False), "--text-file")
    expect_clean_failure(run("eval", MODEL, "--text-file", os.path.join(d, "none.txt"), "-o", out, check=False),
                         "none.txt")
    expect_clean_failure(run("eval", os.path.join(d, "no.gguf"), "--text-file", TEXTS, "-o", out, check=False),
                         "no.gguf")
    expect_clean_failure(run("eval", MODEL, "--text-file", TEXTS, "--policy", "h2o", "--budget", "1", "-o", out,
                             check=False), "room")
    expect_clean_failure(run("eval", MODEL, "--text-file", TEXTS, "--budget", "5000", "-o", out, check=False),
                         "larger")
    expect_clean_failure(run("eval", MODEL, "--text-file", TEXTS, "--retention", "9:0", "-o", out, check=False),
                         "9:0")
    assert not os.path.exists(out) and not os.path.exists(out[:-3] + ".csv")
    assert not os.path.exists(out[:-3] + "-trace.h5")


main(dict(full_is_exact=full_is_exact, same_evictions_as_simulate=same_evictions_as_simulate,
          stories_table=stories_table, bad_input=bad_input))
