"""Models kvtrace runs with their weights encoded, against an independent
float64 NumPy forward pass (gguf_numpy.py) of the same dequantized weights.

usage: test_models.py CASE
  numpy_dequantizer   gguf_numpy's dequantizers give ggml's own values bit for bit (so the
                      reference below starts from exactly the weights ggml would use)
  synthetic_TYPE      llama, llama with llama3 RoPE scaling and qwen2 (biases, NEOX RoPE),
                      GQA 4:1, head_dim 128, every matrix in TYPE: q/k/v/logits as one block and
                      token by token, and `kvtrace record`'s trace, against NumPy
  rope_scaling        llama3 factors from keys = from the rope_freqs tensor; linear scaling;
                      scaling changes the result beyond the tolerance
  ggml_files          the models ggml quantized itself (every type) against NumPy on ggml's values
  llamacpp            llama.cpp's realistic-shape Q8_0 / Q4_K_S models: logits against exact maths
  legacy_q8_0         stories260K quantized by llama.cpp in 2023 (blocks straddle rows)
  alignment1          reliability finding F04: general.alignment = 1
  qwen2_attention     on a qwen2 (NEOX) trace, attention recomputed from stored q/k by simulate and
                      analyze equals the recorded attention
  memory              resident memory of `record` on a Q4_K model grows by <= 1.1 x (file + KV cache)
  bad_input           unknown tensor type, mismatched shapes, token ids out of range, unsupported
                      architecture and RoPE scaling: one line each, non-zero exit
  long_inputs         a document as one prompt, --batch, --threads (identical bits), --n-prompt
  loader_findings     reliability findings F02 (float metadata) and F05 (INT_MIN vocabulary)
"""
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from gguf_numpy import Gguf, Reference, dequantize, relative_error
from helpers import SHARED, expect_clean_failure, run

HELPER = os.environ["KVTRACE_TEST_MODELS"]
QUANT = os.path.join(SHARED, "reference", "quant")
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
TOKENS = [3, 17, 250, 9, 77, 140, 5, 300, 61, 18, 222, 7, 99, 45, 310, 2, 180, 33, 260, 71]
# Every type gets the F32 tolerance: kvtrace and NumPy multiply exactly the same weight values
# (ggml's dequantization, bit for bit), so the only difference is float32 against float64
# arithmetic, whatever the encoding (measured <= 1e-6).  One exception stays inside it: token by
# token, Q4_K, Q6_K, Q8_0 and Q5_0 on AVX-512 take integer products against the input rounded to 16
# bits per 32 values (trace/qkernels.h), measured 7.0e-5 on ggml's Q4_K and Q6_K files, 6.3e-5 and
# 5.4e-5 on its Q8_0 and Q5_0 files, 6.5e-5 and 6.6e-5 on the synthetic Q8_0 and Q5_0 models, 5.7e-5 and 5.4e-5 on llama.cpp's Q4_K_S and
# Q8_0 logits, where llama.cpp's own 8-bit rounding gives 1.9e-2 and 1.2e-2.  Measured errors
# are printed.
TOLERANCE = 1e-4


def helper(*args):
    p = subprocess.run([HELPER, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"test_models {' '.join(map(str, args))}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def write_model(path, arch, rope, ttype, *shape):
    helper("write", path, arch, rope, ttype, *shape)


def kvtrace_outputs(model, tokens, work):
    """q, k, v [L, T, heads*d] and logits [T, V] of kvtrace: one block and token by token."""
    out = helper("forward", model, work, ",".join(map(str, tokens)))
    print(out.strip())
    load = lambda name: np.fromfile(os.path.join(work, name), np.float32)
    return {mode: {n: load(f"{prefix}{n}.f32") for n in ("q", "k", "v", "logits")}
            for mode, prefix in (("block", ""), ("token by token", "step-"))}


def compare(model, tokens, work, label, tol=TOLERANCE, ref=None):
    """kvtrace's outputs (block and token by token) against NumPy's; returns both."""
    ref = ref or Reference(model)
    q, k, v, logits = ref.forward(np.array(tokens))
    L, T = q.shape[0], len(tokens)
    want = {"q": q.reshape(L, T, -1), "k": k.reshape(L, T, -1), "v": v.reshape(L, T, -1), "logits": logits}
    outputs = kvtrace_outputs(model, tokens, work)
    for mode, got in outputs.items():
        errors = {n: relative_error(got[n], want[n].reshape(-1)) for n in want}
        print(f"{label} ({mode}): relative error " + " ".join(f"{n} {e:.1e}" for n, e in errors.items()))
        for n, e in errors.items():
            assert e <= tol, f"{label} {mode}: {n} differs from NumPy by {e:.2e} > {tol:.0e}"
    return want, outputs


def trace_matches(trace, want, tol=TOLERANCE):
    with h5py.File(trace) as f:
        seq = f["sequences/0000"]
        L = f.attrs["n_layers"]
        for name in ("q", "k", "v"):
            got = np.array([seq[f"layers/{l:03d}/{name}"][:] for l in range(L)])
            e = relative_error(got.reshape(-1), want[name].reshape(-1))
            assert e <= tol, f"trace {name} differs from NumPy by {e:.2e}"
        return f.attrs["rope_layout"]


# ------------------------------------------------------------ cases

def numpy_dequantizer():
    for t in TYPES:
        g = Gguf(os.path.join(QUANT, f"tiny-llama-ggml-{t}.gguf"))
        ref = np.fromfile(os.path.join(QUANT, f"tiny-llama-ggml-{t}.f32"), np.float32)
        values = np.concatenate([dequantize(tt, raw, int(np.prod(dims))) for dims, tt, raw in g.tensors.values()])
        assert values.view(np.uint32).tobytes() == ref.view(np.uint32).tobytes(), f"{t}: NumPy dequantizer differs"
        print(f"{t}: NumPy dequantization = ggml's, {len(ref)} values bit for bit")


def synthetic(ttype):
    configs = [("llama", "none"), ("llama", "llama3"), ("qwen2", "none")]
    with tempfile.TemporaryDirectory() as work:
        for arch, rope in configs:
            model = os.path.join(work, f"{arch}-{rope}-{ttype}.gguf")
            write_model(model, arch, rope, ttype)
            want, _ = compare(model, TOKENS, work, f"{arch} rope {rope} {ttype}")
            trace = os.path.join(work, "t.h5")
            run("record", model, "--tokens", ",".join(map(str, TOKENS)), "--threads", 2, "-o", trace, "--force")
            layout = trace_matches(trace, want)
            print(f"  trace rope_layout: {layout}")
            assert ("halves" in layout) == (arch == "qwen2") and ("llama3" in layout) == (rope == "llama3"), layout


def rope_scaling():
    with tempfile.TemporaryDirectory() as work:
        outputs = {}
        for rope in ("none", "llama3", "llama3-keys", "linear"):
            model = os.path.join(work, f"{rope}.gguf")
            write_model(model, "llama", rope, "F32")
            _, got = compare(model, TOKENS, work, f"rope scaling {rope}")
            outputs[rope] = got["block"]
        assert all(np.array_equal(outputs["llama3"][n], outputs["llama3-keys"][n]) for n in outputs["llama3"]), \
            "llama3 factors from keys differ from the rope_freqs tensor"
        for rope in ("llama3", "linear"):
            change = relative_error(outputs[rope]["q"], outputs["none"]["q"])
            print(f"{rope} scaling moves q by {change:.2e} relative")
            assert change > 100 * TOLERANCE, f"{rope} scaling barely changes q: {change}"


def ggml_files():
    """ggml's quantized models; the reference uses ggml's own dequantized values (TYPE.f32)."""
    with tempfile.TemporaryDirectory() as work:
        for t in TYPES:
            model = os.path.join(QUANT, f"tiny-llama-ggml-{t}.gguf")
            ref = Reference(model)
            values = np.fromfile(os.path.join(QUANT, f"tiny-llama-ggml-{t}.f32"), np.float32).astype(np.float64)
            at = 0
            for name, (dims, _, _) in ref.g.tensors.items():  # file order, as TYPE.f32 holds them
                n = int(np.prod(dims))
                tensor = values[at:at + n].reshape(list(reversed(dims)))
                at += n
                if name == "token_embd.weight":
                    ref.embd = tensor
                elif name == "output.weight":
                    ref.out = tensor
                elif name.startswith("blk.0."):
                    ref.blk[0][name[6:-7]] = tensor
            compare(model, [1, 40, 250, 9, 77, 140, 5, 258, 61, 18, 222, 7], work, f"ggml {t}", ref=ref)


def llamacpp():
    d = os.path.join(QUANT, "llamacpp")
    tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 278, 295, 428, 411, 298, 315, 421]
    with tempfile.TemporaryDirectory() as work:
        for t in ("q8_0", "q4_k_s"):
            exact, llama = np.load(os.path.join(d, f"float64-logits-{t}.npy")), np.load(os.path.join(d, f"llamacpp-logits-{t}.npy"))
            for mode, got in kvtrace_outputs(os.path.join(d, f"synth-{t}.gguf"), tokens, work).items():
                logits = got["logits"].reshape(exact.shape)
                e, e_llama = relative_error(logits, exact), relative_error(llama, exact)
                print(f"synth-{t} ({mode}): kvtrace logits vs exact float64 {e:.1e}; "
                      f"llama.cpp's vs exact {e_llama:.1e} (it quantizes activations)")
                assert e <= TOLERANCE, f"{t}: {e}"


def legacy_q8_0():
    model = os.path.join(QUANT, "stories260K-q8_0-v2-2023.gguf")
    with tempfile.TemporaryDirectory() as work:
        compare(model, [1, 403, 407, 261, 378, 432, 383, 286], work, "stories260K Q8_0 (2023, blocks across rows)")
        run("record", model, "--prompt", "Once upon a time", "-o", os.path.join(work, "t.h5"))


def alignment1():
    finding = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                           "F04-gguf-alignment1-misaligned", "align1.gguf")
    with tempfile.TemporaryDirectory() as work:
        want, _ = compare(finding, [1, 40, 90, 7, 300, 12], work, "F04 alignment 1")
        trace = os.path.join(work, "t.h5")
        p = run("record", finding, "--prompt", "Once upon a time", "-o", trace)
        err = p.stderr.decode()
        assert "runtime error" not in err and "Sanitizer" not in err, err


def qwen2_attention():
    with tempfile.TemporaryDirectory() as work:
        model, trace = os.path.join(work, "qwen2.gguf"), os.path.join(work, "t.h5")
        write_model(model, "qwen2", "none", "Q8_0")
        run("record", model, "--tokens", ",".join(map(str, TOKENS * 3)), "--attention", "-o", trace)
        with h5py.File(trace) as f:
            assert "halves" in f.attrs["rope_layout"]
            seq = f["sequences/0000"]
            H, KV, D = (int(f.attrs[k]) for k in ("n_heads", "n_kv_heads", "head_dim"))
            worst = 0
            for l in range(int(f.attrs["n_layers"])):
                q, k = seq[f"layers/{l:03d}/q"][:], seq[f"layers/{l:03d}/k"][:]
                stored = seq[f"layers/{l:03d}/attention"][:]
                T = len(q)
                for h in range(H):
                    s = q[:, h].astype(np.float64) @ k[:, h // (H // KV)].T.astype(np.float64) / np.sqrt(D)
                    s[np.triu_indices(T, 1)] = -np.inf
                    p = np.exp(s - s.max(1, keepdims=True))
                    p /= p.sum(1, keepdims=True)
                    worst = max(worst, np.abs(p - stored[h]).max())
            print(f"qwen2 trace: attention from stored q/k (no RoPE applied) vs recorded: {worst:.1e}")
            assert worst < 1e-5
        sims = {}
        for how in ((), ("--recompute",)):
            out = os.path.join(work, f"sim{len(how)}.h5")
            run("simulate", trace, "--policy", "h2o", "--policy", "tova", "--budget", "25%,50%", *how, "-o", out)
            with h5py.File(out) as f:
                sims[how] = {k: f[k][:] for k in f if isinstance(f[k], h5py.Dataset)}
        for key, stored in sims[()].items():
            if stored.dtype.kind == "f":
                diff = np.nanmax(np.abs(stored - sims[("--recompute",)][key])) if stored.size else 0
                print(f"simulate {key}: stored vs recomputed attention differ by {diff:.1e}")
                assert diff <= 1e-5, key
        run("analyze", trace, "-o", os.path.join(work, "a.h5"))


def memory():
    """Weights stay encoded: recording grows resident memory by about the model file, not by
    float32 copies of it (7.5x for Q4_K).  The model has TinyLlama's shapes but 12 layers, not 22
    (width 2048, feed-forward 5632, 16 heads of 128, 4 kv heads, vocabulary 32000: 381 MB of
    random Q4_K blocks, written without quantizing), and the prompt is a real prefill (two
    blocks of 64 tokens, then two generated).  Beside the file and KV cache, a recording holds
    one block's activations and q rows to write (0.5 MB per layer here; k and v are read from
    the KV cache), 2 MB of logits, a 2 MB weight tile per thread, HDF5's and the libraries'
    first-use allocations (~5 MB), and under AddressSanitizer its shadow of all that: measured
    1.074 x (release build), 1.092 x (AddressSanitizer).  Before HDF5's chunk caches were turned
    off for these datasets they alone held 6 MB per layer, and a block's logits 8 MB."""
    with tempfile.TemporaryDirectory() as work:
        model, trace = os.path.join(work, "q4k.gguf"), os.path.join(work, "t.h5")
        write_model(model, "llama", "none", "Q4_K-random", 2048, 5632, 12, 16, 4, 32000)
        size = os.path.getsize(model)
        prompt = ",".join(str((7 + 37 * i) % 320) for i in range(128))
        # ASan's quarantine and redzones would count as the program's memory: keep them minimal
        p = run("record", model, "--tokens", prompt, "--generate", 2, "--batch", 64,
                "-o", trace, env={"ASAN_OPTIONS": "detect_leaks=0:quarantine_size_mb=0:redzone=16"})
        line = [l for l in p.stderr.decode().splitlines() if l.startswith("memory:")]
        assert line, p.stderr.decode()
        print(line[0])
        fields = dict(part.split("=") for part in line[0].split()[1:])
        peak, baseline, kv = (float(fields[k].rstrip("MiB")) for k in ("peak", "before_model", "kv_cache"))
        file_mib = size / 2 ** 20
        grown = peak - baseline
        print(f"file {file_mib:.1f} MiB, KV cache {kv:.2f} MiB: resident memory grew by {grown:.1f} MiB "
              f"= {grown / (file_mib + kv):.3f} x (file + KV cache)")
        assert grown <= 1.1 * (file_mib + kv), f"resident memory grew by {grown:.1f} MiB"


def bad_input():
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "m.gguf")
        write_model(model, "llama", "none", "Q4_K")
        trace = os.path.join(work, "t.h5")
        expect_clean_failure(run("record", model, "--tokens", "1,2,320", "-o", trace, check=False), "token id 320")
        data = bytearray(open(model, "rb").read())

        def patched(name, edit):
            path = os.path.join(work, name)
            open(path, "wb").write(edit(bytearray(data)))
            return run("record", path, "--tokens", "1,2", "-o", trace, check=False)

        def tensor_info(buf, tensor):
            """offset of the u32 n_dims of a tensor's table entry"""
            key = struct.pack("<Q", len(tensor)) + tensor.encode()
            return buf.index(key) + len(key)

        def set_type(buf, tensor, value):
            at = tensor_info(buf, tensor)
            n_dims = struct.unpack_from("<I", buf, at)[0]
            struct.pack_into("<I", buf, at + 4 + 8 * n_dims, value)
            return buf

        def set_dim(buf, tensor, index, value):
            struct.pack_into("<Q", buf, tensor_info(buf, tensor) + 4 + 8 * index, value)
            return buf

        expect_clean_failure(patched("unknown.gguf", lambda b: set_type(b, "blk.1.attn_k.weight", 77)),
                             "unknown tensor type 77")
        expect_clean_failure(patched("iq2.gguf", lambda b: set_type(b, "blk.1.attn_k.weight", 16)), "IQ2_XXS")
        expect_clean_failure(patched("shape.gguf", lambda b: set_dim(b, "blk.0.ffn_down.weight", 1, 256)),
                             "blk.0.ffn_down.weight")
        arch = patched("arch.gguf", lambda b: b.replace(b"llama", b"gemma"))
        expect_clean_failure(arch, "architecture 'gemma'")
        yarn = os.path.join(work, "yarn.gguf")
        write_model(yarn, "llama", "linear", "F32")
        data = bytearray(open(yarn, "rb").read())
        expect_clean_failure(patched("yarn2.gguf", lambda b: b.replace(b"linear", b"yarn\0\0")), "RoPE scaling")


def long_inputs():
    """--prompt-file --one-sequence, --batch, --threads and --tokens --n-prompt."""
    with tempfile.TemporaryDirectory() as work:
        model = os.path.join(work, "m.gguf")
        write_model(model, "llama", "llama3", "Q4_K")
        doc = os.path.join(work, "doc.txt")
        text = "A first line of a document.\nA second line, longer than the first one.\n\nAfter a blank line.\n"
        open(doc, "w").write(text)
        traces = {}
        for name, args in (("lines", ()), ("doc", ("--one-sequence",)), ("doc_b7", ("--one-sequence", "--batch", 7)),
                           ("doc_t1", ("--one-sequence", "--threads", 1)), ("doc_t2", ("--one-sequence", "--threads", 2))):
            traces[name] = os.path.join(work, f"{name}.h5")
            run("record", model, "--prompt-file", doc, *args, "-o", traces[name])
        with h5py.File(traces["lines"]) as f:
            assert f.attrs["n_sequences"] == 3, f.attrs["n_sequences"]
        with h5py.File(traces["doc"]) as f:
            assert f.attrs["n_sequences"] == 1
            seq = f["sequences/0000"]
            T = len(seq["tokens"])
            assert seq.attrs["n_prompt"] == T and seq.attrs["prompt"] == text, (seq.attrs["n_prompt"], T)
            tokens = seq["tokens"][:]
            qkv = {n: seq[f"layers/001/{n}"][:] for n in ("q", "k", "v")}
        print(f"--one-sequence: the whole {len(text)}-character file is one {T}-token prompt")
        ref = Reference(model)
        q, k, v, _ = ref.forward(tokens)
        for n, want in (("q", q), ("k", k), ("v", v)):
            e = relative_error(qkv[n], want[1])
            print(f"  layer 1 {n} against NumPy: {e:.1e}")
            assert e <= TOLERANCE
        for other in ("doc_b7", "doc_t1", "doc_t2"):
            with h5py.File(traces[other]) as f:
                seq = f["sequences/0000"]
                for n in ("q", "k", "v"):
                    got = seq[f"layers/001/{n}"][:]
                    if other == "doc_b7":  # other block shapes: the same up to float32 rounding
                        assert relative_error(got, qkv[n]) <= TOLERANCE, (other, n)
                    else:
                        assert np.array_equal(got, qkv[n]), f"{other}: {n} differs bitwise"
        print("  --batch 7 agrees to float32 rounding; --threads 1, 2 and every core give identical bits")
        ids = [int(t) for t in tokens]
        trace = os.path.join(work, "np.h5")
        run("record", model, "--tokens", ",".join(map(str, ids)), "--n-prompt", 9, "--generate", 3, "-o", trace)
        with h5py.File(trace) as f:
            seq = f["sequences/0000"]
            assert seq.attrs["n_prompt"] == 9 and len(seq["tokens"]) == T + 3
            assert list(seq["tokens"][:T]) == ids
            got = seq["layers/001/q"][:T]
            nll = seq["nll"][:]
        e = relative_error(got, q[1])
        print(f"--n-prompt 9: {T} given ids (9 in a block, the rest one at a time) + 3 generated; q against NumPy {e:.1e}")
        assert e <= TOLERANCE and np.isfinite(nll[:-1]).all()
        expect_clean_failure(run("record", model, "--prompt", "x", "--n-prompt", 3, "-o", trace, check=False),
                             "--n-prompt")


def loader_findings():
    """Reliability findings F02 and F05: clean refusals, no undefined behaviour (F04: alignment1)."""
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    with tempfile.TemporaryDirectory() as work:
        trace = os.path.join(work, "t.h5")
        f02 = os.path.join(corpus, "F02-gguf-float-cast-ub", "input.gguf")
        expect_clean_failure(run("record", f02, "--tokens", "1,2", "-o", trace, check=False), "norm epsilon")
        f05 = os.path.join(corpus, "F05-llama2c-vocab-intmin", "l2c_intmin.bin")
        expect_clean_failure(run("record", f05, "--tokens", "1,2", "-o", trace, check=False), "llama2.c")
        assert not os.path.exists(trace)


CASES = {f.__name__: f for f in (numpy_dequantizer, rope_scaling, ggml_files, llamacpp, legacy_q8_0, alignment1,
                                 qwen2_attention, memory, bad_input, long_inputs, loader_findings)}

if __name__ == "__main__":
    case = sys.argv[1]
    if case.startswith("synthetic_"):
        synthetic(case[len("synthetic_"):])
    else:
        CASES[case]()
    print("ok")
