"""One layer of a synthetic Llama-2-7B-shaped trace, for the benchmarks
(bench_simulate.py, bench_mpi.py): logits q.k/sqrt(d) about N(0, 1), plus a
sink direction shared by the first four keys and a slowly drifting
component shared by queries and keys (locality), so attention has heavy
hitters and recency; q, k, v stored as float16."""
import numpy as np


def write_layer(sequence, layer, rng, T, H, d):
    """Writes layers/{layer} of an h5py sequence group, drawing from rng."""
    u = rng.standard_normal((1, H, d)).astype(np.float32)
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    walk = np.cumsum(rng.standard_normal((T, H, d)).astype(np.float32), axis=0)
    walk /= np.sqrt(np.arange(1, T + 1, dtype=np.float32))[:, None, None]  # ~unit variance per dim
    local = 0.5 * walk
    q = rng.standard_normal((T, H, d)).astype(np.float32) + 2.0 * u + local
    k = rng.standard_normal((T, H, d)).astype(np.float32) + local
    k[:4] += 20.0 * u
    v = rng.standard_normal((T, H, d)).astype(np.float32)
    g = sequence.create_group(f"layers/{layer:03d}")
    g["q"], g["k"], g["v"] = q.astype(np.float16), k.astype(np.float16), v.astype(np.float16)
    k32, v32 = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
    g["k_norm"] = np.linalg.norm(k32, axis=2)
    g["v_norm_l1"] = np.abs(v32).sum(2)
    g["v_norm_l2"] = np.linalg.norm(v32, axis=2)
