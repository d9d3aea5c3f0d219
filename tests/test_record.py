"""kvtrace record / info through the real command line, read back with h5py
(Debian's python3-h5py) exactly as FORMAT.md describes.

usage: test_record.py CASE"""
import os
import h5py
import numpy as np

from helpers import GOLDEN, GREEDY, MODEL, expect_clean_failure, main, run, workdir


def greedy200():
    """200 greedy steps from BOS reproduce llama2.c's known-good text."""
    out = os.path.join(workdir(), "g.h5")
    p = run("record", MODEL, "--tokens", "1", "--generate", "200", "--echo", "-o", out)
    want = open(GREEDY, "rb").read()
    got = p.stdout
    assert got.endswith(b"\n")
    assert got[:-1] == want, f"text differs:\n{got[:-1]!r}\n{want!r}"
    with h5py.File(out) as f:
        assert f["sequences/0000/tokens"].shape == (201,)


def golden_trace(extra=()):
    g = h5py.File(GOLDEN)
    text = g["forward"].attrs["text"]
    out = os.path.join(workdir(), "golden.h5")
    run("record", MODEL, "--prompt", text, "-o", out, *extra)
    return g, h5py.File(out)


def h5py_readback():
    """Every group, dataset and attribute FORMAT.md lists, with the golden values."""
    g, f = golden_trace(["--attention"])
    assert f.attrs["format"] == "kvtrace-trace/1"
    assert f.attrs["complete"] == 1 and f.attrs["n_sequences"] == 1
    assert f.attrs["model_sha256"] == "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
    L, H, KV, D = (int(f.attrs[k]) for k in ("n_layers", "n_heads", "n_kv_heads", "head_dim"))
    assert (L, H, KV, D) == (5, 8, 4, 8)
    for key in ("model_name", "model_architecture", "model_file", "rope_theta", "rope_layout",
                "recorder_version", "created", "command", "vocab_size", "model_dim"):
        assert key in f.attrs, key
    s = f["sequences/0000"]
    tokens = s["tokens"][:]
    assert tokens.dtype == np.int32
    assert np.array_equal(tokens, g["forward/tokens"][:])
    T = len(tokens)
    assert s.attrs["n_prompt"] == T and s.attrs["complete"] == 1
    assert s.attrs["prompt"] == g["forward"].attrs["text"]
    pieces = [p.decode() for p in s["pieces"][:]]
    assert "".join(pieces[1:]).strip() == g["forward"].attrs["text"]
    nll = s["nll"][:]
    assert nll.shape == (T,) and np.isnan(nll[-1]) and np.all(np.isfinite(nll[:-1])) and np.all(nll[:-1] >= 0)
    # NLL of the next token agrees with the golden logits
    logits = g["forward/logits"][:].astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    want_nll = -logp[np.arange(T - 1), tokens[1:]]
    assert np.allclose(nll[:-1], want_nll, rtol=1e-4, atol=1e-5), np.abs(nll[:-1] - want_nll).max()
    for l in range(L):
        lay = s[f"layers/{l:03d}"]
        q, k, v, a = lay["q"][:], lay["k"][:], lay["v"][:], lay["attention"][:]
        assert q.shape == (T, H, D) and k.shape == (T, KV, D) and v.shape == (T, KV, D) and a.shape == (H, T, T)
        assert q.dtype == np.float32
        for name, mine, ref in (("q", q, g["forward/q"][l]), ("k", k, g["forward/k"][l]), ("v", v, g["forward/v"][l])):
            ref = ref.transpose(1, 0, 2)  # golden is [head][t][d]
            err = np.abs(mine - ref).max() / np.abs(ref).max()
            assert err < 1e-4, (l, name, err)
        assert np.abs(a - g["forward/attn"][l]).max() < 1e-4 * np.abs(g["forward/attn"][l]).max()
        assert np.allclose(lay["k_norm"][:], np.linalg.norm(k, axis=2), rtol=1e-5)
        assert np.allclose(lay["v_norm_l1"][:], np.abs(v).sum(2), rtol=1e-5)
        assert np.allclose(lay["v_norm_l2"][:], np.linalg.norm(v, axis=2), rtol=1e-5)
        # attention recomputed from the recorded q and k equals the stored one
        group = H // KV
        for h in range(H):
            logits_h = q[:, h, :] @ k[:, h // group, :].T / np.sqrt(D)
            logits_h[np.triu_indices(T, 1)] = -np.inf
            p = np.exp(logits_h - logits_h.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            assert np.abs(p - a[h]).max() < 1e-5, (l, h, np.abs(p - a[h]).max())


def half():
    """--half stores q/k/v as float16 that h5py reads as such."""
    g, f = golden_trace(["--half"])
    q = f["sequences/0000/layers/002/q"]
    assert q.dtype == np.float16, q.dtype
    ref = g["forward/q"][2].transpose(1, 0, 2)
    assert np.abs(q[:].astype(np.float32) - ref).max() <= 1e-3 * np.abs(ref).max() + 1e-3
    assert f["sequences/0000/layers/002/k_norm"].dtype == np.float32
    assert "attention" not in f["sequences/0000/layers/002"]


def prompt_file_and_info():
    """Several sequences from a prompt file, sampled with a seed, described by info."""
    d = workdir()
    prompts = os.path.join(d, "prompts.txt")
    open(prompts, "w").write("Once upon a time\n\nTom had a red ball.\nThe cat sat\n")
    out = os.path.join(d, "multi.h5")
    run("record", MODEL, "--prompt-file", prompts, "--generate", "20", "--temperature", "0.8",
        "--seed", "7", "--no-stop", "-o", out)
    out2 = os.path.join(d, "multi2.h5")
    run("record", MODEL, "--prompt-file", prompts, "--generate", "20", "--temperature", "0.8",
        "--seed", "7", "--no-stop", "-o", out2)
    with h5py.File(out) as f, h5py.File(out2) as f2:
        assert f.attrs["n_sequences"] == 3
        for i in range(3):
            s = f[f"sequences/{i:04d}"]
            assert s["tokens"].shape[0] == s.attrs["n_prompt"] + 20
            assert np.array_equal(s["tokens"][:], f2[f"sequences/{i:04d}/tokens"][:]), "same seed, same text"
        assert f["sequences/0001"].attrs["prompt"] == "Tom had a red ball."
    p = run("info", out)
    text = p.stdout.decode()
    assert "sequences:  3" in text and "complete" in text and "Tom had a red ball." in text, text


def interrupted():
    """Ctrl-C mid-recording: one-line error, exit 1, a readable trace flagged incomplete."""
    out = os.path.join(workdir(), "int.h5")
    p = run("record", MODEL, "--tokens", "1", "--generate", "400", "--no-stop", "-o", out,
            env={"KVTRACE_TEST_SIGNAL": "INT:150"}, check=False)
    expect_clean_failure(p, must_mention="interrupted", codes=(1,))
    info = run("info", out, check=False)
    assert info.returncode == 3, info.returncode
    assert "INCOMPLETE" in info.stdout.decode()
    with h5py.File(out) as f:
        assert f.attrs["complete"] == 0
        s = f["sequences/0000"]
        assert s.attrs["complete"] == 0
        T = s["tokens"].shape[0]
        assert 150 <= T < 401, T
        assert s["layers/004/v"].shape[0] == T


def killed():
    """A crash (SIGKILL) leaves what was flushed readable, flagged incomplete."""
    out = os.path.join(workdir(), "kill.h5")
    p = run("record", MODEL, "--tokens", "1", "--generate", "600", "--no-stop", "-o", out,
            env={"KVTRACE_TEST_SIGNAL": "KILL:300"}, check=False)
    assert p.returncode == -9, p.returncode
    info = run("info", out, check=False)
    assert info.returncode == 3, (info.returncode, info.stderr)
    with h5py.File(out, "r", swmr=True) as f:  # its SWMR writer never closed it
        s = f["sequences/0000"]
        assert s.attrs["complete"] == 0 and s.attrs["n_rows"] >= 128 and s["tokens"].shape[0] >= s.attrs["n_rows"]


def overwrite():
    """An existing output is refused without --force and replaced whole with it."""
    d = workdir()
    out = os.path.join(d, "t.h5")
    open(out, "w").write("precious")
    p = run("record", MODEL, "--tokens", "1,403", "-o", out, check=False)
    expect_clean_failure(p, must_mention=out)
    assert open(out).read() == "precious"
    run("record", MODEL, "--tokens", "1,403", "-o", out, "--force")
    with h5py.File(out) as f:
        assert list(f["sequences/0000/tokens"][:]) == [1, 403]
    assert os.listdir(d) == ["t.h5"], os.listdir(d)


def foreign_tokenizer():
    """A GGUF whose tokenizer kvtrace cannot handle (here: a BPE 'gpt2' model
    name) refuses text prompts clearly and still records from token ids."""
    data = bytearray(open(MODEL, "rb").read())
    at = data.find(b"tokenizer.ggml.model")
    assert at > 0
    value = at + len(b"tokenizer.ggml.model") + 4 + 8  # type u32, then the string's u64 length
    assert data[value:value + 5] == b"llama"
    data[value:value + 5] = b"gpt2x"
    d = workdir()
    model = os.path.join(d, "bpe.gguf")
    open(model, "wb").write(data)
    out = os.path.join(d, "t.h5")
    p = run("record", model, "--prompt", "Once upon a time", "-o", out, check=False)
    line = expect_clean_failure(p, must_mention="--tokens")
    assert "gpt2x" in line, line
    p = run("record", model, "--tokens", "1,403,407,261", "--generate", "5", "-o", out)
    assert "no usable tokenizer" in p.stderr.decode()
    with h5py.File(out) as f:
        assert list(f["sequences/0000/tokens"][:4]) == [1, 403, 407, 261]
        assert f["sequences/0000/tokens"].shape == (9,)


main({f.__name__: f for f in (foreign_tokenizer, greedy200, h5py_readback, half, prompt_file_and_info, interrupted, killed, overwrite)})
