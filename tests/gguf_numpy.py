"""An independent reference for kvtrace's model code, in NumPy: a GGUF
reader, dequantizers for the 13 tensor types (written from ggml's block
layouts, checked bit for bit against ggml's own dequantized values), and a
float64 forward pass of the llama and qwen2 architectures with RoPE scaling
none / linear / llama3.  Shares no code with kvtrace."""
import math
import struct

import numpy as np

SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
          10: "<u8", 11: "<i8", 12: "<f8"}
# type id: (name, elements per block, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 8: ("Q8_0", 32, 34),
         2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
         10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
         13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210)}


class Gguf:
    def __init__(self, path):
        self.data = open(path, "rb").read()
        self.pos = 0
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", self.data, 0)
        assert magic == b"GGUF", path
        self.pos = 24
        self.meta = {}
        for _ in range(n_kv):
            key = self._string()
            self.meta[key] = self._value(self._u32())
        self.alignment = int(self.meta.get("general.alignment", 32))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._u32()
            dims = [self._u64() for _ in range(n_dims)]
            ttype, offset = self._u32(), self._u64()
            infos.append((name, dims, ttype, offset))
        start = -(-self.pos // self.alignment) * self.alignment
        self.tensors = {}
        for name, dims, ttype, offset in infos:
            _, elems, size = TYPES[ttype]
            n = int(np.prod(dims))
            raw = np.frombuffer(self.data, np.uint8, n // elems * size, start + offset)
            self.tensors[name] = (dims, ttype, raw)

    def _u32(self):
        self.pos += 4
        return struct.unpack_from("<I", self.data, self.pos - 4)[0]

    def _u64(self):
        self.pos += 8
        return struct.unpack_from("<Q", self.data, self.pos - 8)[0]

    def _string(self):
        n = self._u64()
        self.pos += n
        return self.data[self.pos - n:self.pos].decode("utf-8", "replace")

    def _value(self, t):
        if t == 8:
            return self._string()
        if t == 9:
            et, n = self._u32(), self._u64()
            return [self._value(et) for _ in range(n)]
        dt = np.dtype(SCALAR[t])
        self.pos += dt.itemsize
        return np.frombuffer(self.data, dt, 1, self.pos - dt.itemsize)[0].item()

    def tensor(self, name):
        """float32 values shaped [rows][cols] (ggml's ne0 is cols)."""
        dims, ttype, raw = self.tensors[name]
        values = dequantize(ttype, raw, int(np.prod(dims)))
        return values.reshape(list(reversed(dims)))


# ------------------------------------------------------------ dequantization (float32, ggml's order of operations)

def _half(b, at):
    return b[:, at:at + 2].copy().view(np.float16).astype(np.float32)  # [blocks, 1]


def _scale_min_k4(s):
    """Q4_K/Q5_K: 8 (scale, min) pairs of 6 bits from 12 bytes -> two [blocks, 8] arrays."""
    s = s.astype(np.int32)
    sc = np.empty((len(s), 8), np.int32)
    mn = np.empty((len(s), 8), np.int32)
    sc[:, :4], mn[:, :4] = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc.astype(np.float32), mn.astype(np.float32)


def _two_bit_planes(qs):
    """Q2_K/Q3_K: element 128n + 32s + l is bits 2s of byte 32n + l -> [blocks, 256] ints."""
    out = np.empty((len(qs), 256), np.int32)
    for n in range(2):
        for s in range(4):
            out[:, 128 * n + 32 * s:128 * n + 32 * s + 32] = (qs[:, 32 * n:32 * n + 32] >> (2 * s)) & 3
    return out


def dequantize(ttype, raw, n):
    name, elems, size = TYPES[ttype]
    if name == "F32":
        return raw.view(np.float32).copy()
    if name == "F16":
        return raw.view(np.float16).astype(np.float32)
    if name == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    b = raw.reshape(-1, size)
    f32 = np.float32
    if name == "Q8_0":
        y = b[:, 2:34].view(np.int8).astype(f32) * _half(b, 0)
    elif name in ("Q4_0", "Q4_1"):
        qs = b[:, size - 16:].astype(np.int32)
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
        if name == "Q4_0":
            y = (q - 8).astype(f32) * _half(b, 0)
        else:
            y = q.astype(f32) * _half(b, 0) + _half(b, 2)
    elif name in ("Q5_0", "Q5_1"):
        qh_at = 2 if name == "Q5_0" else 4
        qh = b[:, qh_at:qh_at + 4].copy().view(np.uint32).astype(np.int64)  # [blocks, 1]
        high = (qh >> np.arange(32)) & 1
        qs = b[:, qh_at + 4:].astype(np.int32)
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1) | (high.astype(np.int32) << 4)
        if name == "Q5_0":
            y = (q - 16).astype(f32) * _half(b, 0)
        else:
            y = q.astype(f32) * _half(b, 0) + _half(b, 2)
    elif name == "Q2_K":
        sc = b[:, 0:16].astype(np.int32)
        d, dmin = _half(b, 80), _half(b, 82)
        dl = np.repeat(d * (sc & 0xF).astype(f32), 16, axis=1)
        ml = np.repeat(dmin * (sc >> 4).astype(f32), 16, axis=1)
        y = dl * _two_bit_planes(b[:, 16:80]).astype(f32) - ml
    elif name == "Q3_K":
        hmask, qs, s = b[:, 0:32].astype(np.int32), b[:, 32:96], b[:, 96:108].astype(np.int32)
        d = _half(b, 108)
        scales = np.empty((len(b), 16), np.int32)
        for j in range(16):
            low = s[:, j] & 0xF if j < 8 else s[:, j - 8] >> 4
            scales[:, j] = (low | (((s[:, 8 + j % 4] >> (2 * (j // 4))) & 3) << 4)) - 32
        high = np.empty((len(b), 256), np.int32)
        for e in range(256):
            high[:, e] = (hmask[:, e % 32] >> (e // 32)) & 1
        q = _two_bit_planes(qs) - 4 * (1 - high)
        y = np.repeat(d * scales.astype(f32), 16, axis=1) * q.astype(f32)
    elif name in ("Q4_K", "Q5_K"):
        d, dmin = _half(b, 0), _half(b, 2)
        sc, mn = _scale_min_k4(b[:, 4:16])
        qs = b[:, 16:144] if name == "Q4_K" else b[:, 48:176]
        q = np.empty((len(b), 256), np.int32)
        for c in range(4):
            chunk = qs[:, 32 * c:32 * c + 32].astype(np.int32)
            q[:, 64 * c:64 * c + 32], q[:, 64 * c + 32:64 * c + 64] = chunk & 0xF, chunk >> 4
            if name == "Q5_K":
                qh = b[:, 16:48].astype(np.int32)
                q[:, 64 * c:64 * c + 32] += ((qh >> (2 * c)) & 1) * 16
                q[:, 64 * c + 32:64 * c + 64] += ((qh >> (2 * c + 1)) & 1) * 16
        y = np.repeat(d * sc, 32, axis=1) * q.astype(f32) - np.repeat(dmin * mn, 32, axis=1)
    elif name == "Q6_K":
        ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
        sc = b[:, 192:208].view(np.int8).astype(f32)
        d = _half(b, 208)
        q = np.empty((len(b), 256), np.int32)
        for h in range(2):
            lo, hi = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            base = 128 * h
            q[:, base:base + 32] = (lo[:, 0:32] & 0xF) | ((hi & 3) << 4)
            q[:, base + 32:base + 64] = (lo[:, 32:64] & 0xF) | (((hi >> 2) & 3) << 4)
            q[:, base + 64:base + 96] = (lo[:, 0:32] >> 4) | (((hi >> 4) & 3) << 4)
            q[:, base + 96:base + 128] = (lo[:, 32:64] >> 4) | (((hi >> 6) & 3) << 4)
        y = np.repeat(d * sc, 16, axis=1) * (q - 32).astype(f32)
    else:
        raise ValueError(name)
    return y.astype(np.float32).reshape(-1)[:n]


# ------------------------------------------------------------ the forward pass (float64)

class Reference:
    def __init__(self, path):
        g = Gguf(path)
        self.g = g
        arch = g.meta["general.architecture"]
        key = lambda k, default=None: g.meta.get(f"{arch}.{k}", default)
        self.arch = arch
        self.dim, self.layers = key("embedding_length"), key("block_count")
        self.heads = key("attention.head_count")
        self.kv_heads = key("attention.head_count_kv", self.heads)
        self.head_dim = self.dim // self.heads
        self.eps = key("attention.layer_norm_rms_epsilon", 1e-5)
        theta = key("rope.freq_base", 10000.0)
        j = np.arange(self.head_dim // 2)
        self.freq = theta ** (-2.0 * j / self.head_dim)
        scaling = key("rope.scaling.type", "none")
        if "rope_freqs.weight" in g.tensors:
            self.freq = self.freq / g.tensor("rope_freqs.weight").astype(np.float64)
        elif scaling == "llama3":
            self.freq = self.freq / llama3_factors(
                self.freq, key("rope.scaling.factor"), key("rope.scaling.low_freq_factor"),
                key("rope.scaling.high_freq_factor"), key("rope.scaling.original_context_length"))
        elif scaling == "linear":
            self.freq = self.freq / key("rope.scaling.factor")
        self.neox = arch == "qwen2"
        w = lambda name: g.tensor(name).astype(np.float64)
        self.embd = w("token_embd.weight")
        self.out_norm = w("output_norm.weight")
        self.out = w("output.weight") if "output.weight" in g.tensors else self.embd
        self.blk = []
        for l in range(self.layers):
            p = f"blk.{l}."
            b = {n: w(p + n + ".weight") for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                     "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            for n in ("attn_q", "attn_k", "attn_v"):
                b[n + ".bias"] = w(p + n + ".bias") if p + n + ".bias" in g.tensors else 0.0
            self.blk.append(b)

    def rmsnorm(self, x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * weight

    def rope(self, x, heads):
        """x [T, heads*d] -> rotated [T, heads, d]."""
        T, d = len(x), self.head_dim
        x = x.reshape(T, heads, d).copy()
        angle = np.arange(T)[:, None] * self.freq[None, :]
        c, s = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        if self.neox:
            a, b = x[..., :d // 2].copy(), x[..., d // 2:].copy()
            x[..., :d // 2], x[..., d // 2:] = a * c - b * s, a * s + b * c
        else:
            a, b = x[..., 0::2].copy(), x[..., 1::2].copy()
            x[..., 0::2], x[..., 1::2] = a * c - b * s, a * s + b * c
        return x

    def forward(self, tokens):
        """q [L, T, H, d], k and v [L, T, KV, d] (after RoPE), logits [T, V]."""
        T, H, KV, d = len(tokens), self.heads, self.kv_heads, self.head_dim
        x = self.embd[tokens]
        qs, ks, vs = [], [], []
        mask = np.triu(np.ones((T, T), bool), 1)
        for b in self.blk:
            h = self.rmsnorm(x, b["attn_norm"])
            q = self.rope(h @ b["attn_q"].T + b["attn_q.bias"], H)
            k = self.rope(h @ b["attn_k"].T + b["attn_k.bias"], KV)
            v = (h @ b["attn_v"].T + b["attn_v.bias"]).reshape(T, KV, d)
            qs.append(q), ks.append(k), vs.append(v)
            out = np.empty((T, H, d))
            for head in range(H):
                g = head // (H // KV)
                s = q[:, head] @ k[:, g].T / math.sqrt(d)
                s[mask] = -np.inf
                p = np.exp(s - s.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                out[:, head] = p @ v[:, g]
            x = x + out.reshape(T, H * d) @ b["attn_output"].T
            h = self.rmsnorm(x, b["ffn_norm"])
            gate, up = h @ b["ffn_gate"].T, h @ b["ffn_up"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ b["ffn_down"].T
        logits = self.rmsnorm(x, self.out_norm) @ self.out.T
        return np.array(qs), np.array(ks), np.array(vs), logits


def llama3_factors(freq, factor, low, high, old_context):
    """Meta's Llama 3.1 scaling: a divisor per frequency."""
    wavelen = 2 * math.pi / freq
    smooth = (old_context / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < old_context / high, 1.0, np.where(wavelen > old_context / low, factor, blended))


def relative_error(got, ref):
    """Largest |got - ref| relative to the largest |ref|."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(got - ref).max() / np.abs(ref).max())
