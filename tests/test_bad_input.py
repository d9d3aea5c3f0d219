"""Bad input of every kind gives one error line naming the file and the
problem, a non-zero exit, no crash, and no output left behind.

usage: test_bad_input.py CASE"""
import os
import struct

import h5py
import numpy as np

from helpers import MODEL, expect_clean_failure, main, run, workdir

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_layout(data):
    """Offsets of the parts of a GGUF header (an independent minimal parser)."""
    pos = 24
    kv = {}

    def skip(t, pos):
        if t == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                pos = skip(et, pos)
            return pos
        return pos + SCALAR[t]

    (n_tensors, n_kv) = struct.unpack_from("<QQ", data, 8)
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (t,) = struct.unpack_from("<I", data, pos)
        kv[key] = pos + 4
        pos = skip(t, pos + 4)
    tensors = {}
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", data, pos)
        name = data[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (nd,) = struct.unpack_from("<I", data, pos)
        tensors[name] = {"dims_at": pos + 4, "type_at": pos + 4 + 8 * nd, "offset_at": pos + 8 + 8 * nd}
        pos += 4 + 8 * nd + 12
    data_start = (pos + 31) // 32 * 32
    return kv, tensors, data_start


def patched_model(patch):
    data = bytearray(open(MODEL, "rb").read())
    patch(data, *gguf_layout(data))
    path = os.path.join(workdir(), "bad.gguf")
    open(path, "wb").write(data)
    return path


def record_fails(model_path, mention, *extra):
    out = os.path.join(workdir(), "out.h5")
    p = run("record", model_path, "--tokens", "1,403,407", *extra, "-o", out, check=False)
    line = expect_clean_failure(p, must_mention=model_path)
    assert mention in line, f"{mention!r} not in {line!r}"
    assert not os.path.exists(out), "a failed recording left its output behind"


def missing_model():
    record_fails("/nonexistent/model.gguf", "cannot open")


def truncated_gguf():
    path = os.path.join(workdir(), "trunc.gguf")
    open(path, "wb").write(open(MODEL, "rb").read()[:600000])
    record_fails(path, "beyond the end of the file")


def truncated_header():
    path = os.path.join(workdir(), "trunc-header.gguf")
    open(path, "wb").write(open(MODEL, "rb").read()[:3000])
    record_fails(path, "truncated")


def absurd_tensor_count():
    record_fails(patched_model(lambda d, kv, t, s: struct.pack_into("<Q", d, 8, 1 << 60)), "tensors")


def absurd_metadata_count():
    record_fails(patched_model(lambda d, kv, t, s: struct.pack_into("<Q", d, 16, 1 << 58)), "metadata entries")


def absurd_dimensions():
    def patch(d, kv, tensors, s):
        struct.pack_into("<Q", d, tensors["blk.0.attn_q.weight"]["dims_at"], 1 << 50)
    record_fails(patched_model(patch), "absurd dimension")


def absurd_model_width():
    def patch(d, kv, tensors, s):
        struct.pack_into("<I", d, kv["llama.embedding_length"], 3)
    record_fails(patched_model(patch), "")


def unknown_tensor_type():
    def patch(d, kv, tensors, s):
        struct.pack_into("<I", d, tensors["blk.1.ffn_up.weight"]["type_at"], 97)
    record_fails(patched_model(patch), "unknown tensor type 97")


def non_llama_architecture():
    def patch(d, kv, tensors, s):
        at = kv["general.architecture"] + 8
        d[at:at + 5] = b"mamba"
    record_fails(patched_model(patch), "architecture 'mamba' is not supported")


def nan_weights():
    def patch(d, kv, tensors, s):
        (offset,) = struct.unpack_from("<Q", d, tensors["blk.2.ffn_norm.weight"]["offset_at"])
        struct.pack_into("<f", d, s + offset + 8, float("nan"))
    record_fails(patched_model(patch), "NaN")


def not_a_model():
    path = os.path.join(workdir(), "notes.txt")
    open(path, "w").write("these are not the weights you are looking for\n" * 10)
    record_fails(path, "neither a GGUF file nor a llama2.c checkpoint")


def context_overflow():
    record_fails(MODEL, "context", "--generate", "5000")


def token_out_of_range():
    out = os.path.join(workdir(), "out.h5")
    p = run("record", MODEL, "--tokens", "1,4000", "-o", out, check=False)
    expect_clean_failure(p, must_mention="4000")
    assert not os.path.exists(out)


def bad_cli_arguments():
    out = os.path.join(workdir(), "out.h5")
    for args in (["--tokens", "1", "--generate", "-3"], ["--tokens", "1", "--frobnicate"],
                 ["--tokens", "1", "--prompt", "x"], ["--tokens", "1,x"], ["--temperature", "nan", "--tokens", "1"]):
        p = run("record", MODEL, *args, "-o", out, check=False)
        expect_clean_failure(p, codes=(2,))
    p = run("record", "--tokens", "1", "-o", out, check=False)
    expect_clean_failure(p, must_mention="MODEL", codes=(2,))
    p = run("frobnicate", check=False)
    expect_clean_failure(p, must_mention="frobnicate", codes=(2,))
    assert not os.path.exists(out)


def info_fails(path, mention):
    p = run("info", path, check=False)
    expect_clean_failure(p, must_mention=path)
    assert mention in p.stderr.decode(), p.stderr.decode()


def missing_trace():
    info_fails("/nonexistent/trace.h5", "cannot open")


def corrupt_hdf5():
    path = os.path.join(workdir(), "corrupt.h5")
    open(path, "wb").write(os.urandom(4096))
    info_fails(path, "not an HDF5 file")


def truncated_hdf5():
    d = workdir()
    good = os.path.join(d, "good.h5")
    run("record", MODEL, "--tokens", "1", "--generate", "300", "--no-stop", "-o", good)
    path = os.path.join(d, "truncated.h5")
    data = open(good, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    info_fails(path, "")


def foreign_hdf5():
    path = os.path.join(workdir(), "foreign.h5")
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10)
    info_fails(path, "not a kvtrace trace")


def wrong_format_version():
    d = workdir()
    path = os.path.join(d, "v9.h5")
    run("record", MODEL, "--tokens", "1,403", "-o", path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "kvtrace-trace/9"
    info_fails(path, "kvtrace-trace/9")


def damaged_trace_shape():
    d = workdir()
    path = os.path.join(d, "shape.h5")
    run("record", MODEL, "--tokens", "1,403,407", "-o", path)
    with h5py.File(path, "a") as f:
        del f["sequences/0000/layers/003/k"]
        f["sequences/0000/layers/003/k"] = np.zeros((2, 4, 8), np.float32)
    info_fails(path, "layers/003/k")


main({f.__name__: f for f in (
    missing_model, truncated_gguf, truncated_header, absurd_tensor_count, absurd_metadata_count,
    absurd_dimensions, absurd_model_width, unknown_tensor_type, non_llama_architecture, nan_weights,
    not_a_model, context_overflow, token_out_of_range, bad_cli_arguments, missing_trace, corrupt_hdf5,
    truncated_hdf5, foreign_hdf5, wrong_format_version, damaged_trace_shape)})
