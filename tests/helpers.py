"""Shared helpers for the Python tests: paths, running kvtrace, and the
checks every failing command must pass (one-line error, non-zero exit,
no crash, no sanitizer report)."""
import os
import subprocess
import sys
import tempfile

KVTRACE = os.path.abspath(os.environ["KVTRACE"])
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


def write_trace(path, q, k, v=None, attention=None, n_prompt=1, k_norm=None):
    """A one-sequence trace written by hand with h5py, as FORMAT.md specifies:
    q [L][T][H][d], k and v [L][T][KV][d]; attention [L][H][T][T] optional."""
    import h5py
    import numpy as np
    q, k = np.asarray(q, np.float32), np.asarray(k, np.float32)
    v = np.ones_like(k) if v is None else np.asarray(v, np.float32)
    L, T, H, d = q.shape
    KV = k.shape[2]
    with h5py.File(path, "w") as f:
        for key, val in dict(format="kvtrace-trace/1", n_layers=L, n_heads=H, n_kv_heads=KV, head_dim=d,
                             model_dim=H * d, vocab_size=10, rope_theta=10000.0, complete=1, model_sha256="hand",
                             model_file="hand.gguf", model_name="hand").items():
            f.attrs[key] = val
        s = f.create_group("sequences/0000")
        s.attrs["n_prompt"] = n_prompt
        s.attrs["complete"] = 1
        s["tokens"] = np.arange(T, dtype=np.int32) % 10
        s["pieces"] = np.array([b"a"] * T, dtype=h5py.string_dtype())
        s["nll"] = np.zeros(T, np.float32)
        for l in range(L):
            lay = s.create_group(f"layers/{l:03d}")
            lay["q"], lay["k"], lay["v"] = q[l], k[l], v[l]
            lay["k_norm"] = np.linalg.norm(k[l], axis=2) if k_norm is None else np.asarray(k_norm[l], np.float32)
            lay["v_norm_l1"] = np.abs(v[l]).sum(axis=2)
            lay["v_norm_l2"] = np.linalg.norm(v[l], axis=2)
            if attention is not None:
                lay["attention"] = np.asarray(attention[l], np.float32)
    return path


def workdir():
    return tempfile.mkdtemp(prefix="kvtrace-test-")


def main(cases):
    name = sys.argv[1]
    cases[name]()
    print(f"{name}: ok")


def synthetic_trace(path, T=2048, H=4, KV=2, d=16, layers=1, n_prompt=256, seed=7):
    """A deterministic long trace (seeded NumPy PCG64): attention with a sink
    (a direction shared by the first four keys), locality (a slowly drifting
    component shared by queries and keys) and noise, like a real model's.
    q [L][T][H][d], k and v [L][T][KV][d], float32."""
    import numpy as np
    rng = np.random.default_rng(seed)
    q, k, v = [], [], []
    for _ in range(layers):
        u = rng.standard_normal((1, KV, d))
        u /= np.linalg.norm(u, axis=2, keepdims=True)
        walk = np.cumsum(rng.standard_normal((T, KV, d)), axis=0) / np.sqrt(np.arange(1, T + 1))[:, None, None]
        kk = rng.standard_normal((T, KV, d)) + walk
        kk[:4] += 6.0 * u
        qq = rng.standard_normal((T, H, d)) + np.repeat(1.5 * u + walk, H // KV, axis=1)
        q.append(qq)
        k.append(kk)
        v.append(rng.standard_normal((T, KV, d)))
    return write_trace(path, np.array(q), np.array(k), np.array(v), n_prompt=n_prompt)
