"""Tokenizers through the real command line: `kvtrace tokenize` on llama.cpp's
vectors for every vocabulary in ../shared/reference/vocab; synthetic Llama 3
(llama-bpe) and Qwen2 vocabularies against a reference encoder written here
with Python's regex module and the patterns as their tokenizer.json files
write them; chat templates; a BPE prompt recorded into a trace; bad
vocabularies; and the reliability findings F01, F03 and F12.

usage: test_tokenize.py CASE"""
import os
import struct
import subprocess
import sys
from collections import Counter

import h5py
import regex

from helpers import KVTRACE, MODEL, SHARED, expect_clean_failure, main, run, workdir

VOCAB_DIR = os.path.join(SHARED, "reference", "vocab")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tokenizer")


def vocab(name):
    return os.path.join(VOCAB_DIR, f"ggml-vocab-{name}.gguf")


# ---- GGUF files: read, change the metadata, write back ----

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY, UINT32, INT32, BOOL = 8, 9, 4, 5, 7


def read_gguf(path):
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<Q")
        pos += n
        return data[pos - n:pos]

    def value(t):
        if t == STRING:
            return string()
        if t == ARRAY:
            et, n = take("<I"), take("<Q")
            return (et, [value(et) for _ in range(n)])
        return take(SCALARS[t])

    assert data[:4] == b"GGUF"
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    kvs = {}
    for _ in range(n_kv):
        key = string().decode()
        t = take("<I")
        kvs[key] = (t, value(t))
    tensors = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        tensors.append((name, dims, take("<I"), take("<Q")))
    align = kvs.get("general.alignment", (UINT32, 32))[1]
    start = (pos + align - 1) // align * align
    return {"kvs": kvs, "tensors": tensors, "data": data[start:], "align": align}


def write_gguf(path, g):
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(g["tensors"]), len(g["kvs"])))

    def string(s):
        out.extend(struct.pack("<Q", len(s)) + s)

    def value(t, v):
        if t == STRING:
            string(v)
        elif t == ARRAY:
            et, items = v
            out.extend(struct.pack("<IQ", et, len(items)))
            for item in items:
                value(et, item)
        else:
            out.extend(struct.pack(SCALARS[t], v))

    for key, (t, v) in g["kvs"].items():
        string(key.encode())
        out.extend(struct.pack("<I", t))
        value(t, v)
    for name, dims, t, offset in g["tensors"]:
        string(name)
        out.extend(struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims))
        out.extend(struct.pack("<IQ", t, offset))
    out.extend(b"\0" * (-len(out) % g["align"]))
    open(path, "wb").write(bytes(out) + g["data"])


def changed_copy(src, name, change):
    """A copy of GGUF src with change(kvs) applied, in a fresh directory."""
    g = read_gguf(src)
    change(g["kvs"])
    path = os.path.join(workdir(), name)
    write_gguf(path, g)
    return path


# ---- byte-level BPE, the obvious way ----

def gpt2_byte_chars():
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


BYTE_CHAR = gpt2_byte_chars()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}

# The pre-tokenizer patterns of Llama 3 and Qwen2 as their tokenizer.json files write them.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

SPECIALS = [("<|begin_of_text|>", 3), ("<|end_of_text|>", 3), ("<|start_header_id|>", 3), ("<|end_header_id|>", 3),
            ("<|eot_id|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tag>", 4), ("<|eot", 4)]

TRAINING = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "The quick brown fox jumps over the lazy dog! It's 2024; we'll see what they've done.",
    "def main():\n    print('hello, world')\n    return 0\n\n",
    "Numbers: 1234567 3.14159 42 1999 -7 +8 100% 12 123 1234 2023 2024 1234567890 123123123 456 789",
    "12 123 1234 12345 123456 1234567 12345678 123456789 1234567890 11 22 33 111 222 333",
    "Café naïve résumé Über straße ЖЖ привет мир 中文 日本語 한국어",
    "I'M SURE YOU'LL LIKE IT, DON'T YOU?   spaces\t\ttabs\r\nwindows\n\n\nlines",
    "~~ ~. .~ ~! ?~ a~b ~/ x.~y ~~~ ..~~.. ~, ,~",
]


class Bpe:
    """A small byte-level BPE vocabulary trained here, and its reference encoder."""

    def __init__(self, split, pre, n_merges, ignore_merges, add_bos, train_split=None):
        """split(text) -> words; merges are learnt from train_split's words (whole lines when None)."""
        self.split, self.pre, self.ignore_merges, self.add_bos = split, pre, ignore_merges, add_bos
        words = Counter()
        for text in TRAINING:
            for w in (train_split(text) if train_split else [text]):
                words[tuple(BYTE_CHAR[b] for b in w.encode())] += 1
        self.tokens = [BYTE_CHAR[b] for b in range(256)]
        self.merges = []
        for _ in range(n_merges):
            pairs = Counter()
            for w, c in words.items():
                for a, b in zip(w, w[1:]):
                    pairs[(a, b)] += c
            if not pairs:
                break
            (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
            self.merges.append((a, b))
            if a + b not in self.tokens:
                self.tokens.append(a + b)
            merged = Counter()
            for w, c in words.items():
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                        out.append(a + b)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                merged[tuple(out)] += c
            words = merged
        self.tokens.append("Ġzyzzyva")  # a word no merge reaches: only ignore_merges finds it
        self.types = [1] * len(self.tokens)
        for text, t in SPECIALS:
            self.tokens.append(text)
            self.types.append(t)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self.bos = self.index["<|begin_of_text|>"]

    def write(self, path, template=None):
        kvs = {"general.architecture": (STRING, b"llama"), "tokenizer.ggml.model": (STRING, b"gpt2"),
               "tokenizer.ggml.pre": (STRING, self.pre.encode()),
               "tokenizer.ggml.tokens": (ARRAY, (STRING, [t.encode() for t in self.tokens])),
               "tokenizer.ggml.token_type": (ARRAY, (INT32, self.types)),
               "tokenizer.ggml.merges": (ARRAY, (STRING, [f"{a} {b}".encode() for a, b in self.merges])),
               "tokenizer.ggml.bos_token_id": (UINT32, self.bos),
               "tokenizer.ggml.eos_token_id": (UINT32, self.index["<|end_of_text|>"]),
               "tokenizer.ggml.add_bos_token": (BOOL, self.add_bos)}
        if template:
            kvs["tokenizer.chat_template"] = (STRING, template.encode())
        write_gguf(path, {"kvs": kvs, "tensors": [], "data": b"", "align": 32})
        return path

    def word(self, data):
        syms = [BYTE_CHAR[b] for b in data]
        if self.ignore_merges and "".join(syms) in self.index:
            return [self.index["".join(syms)]]
        while True:
            ranked = [(self.ranks[p], i) for i, p in enumerate(zip(syms, syms[1:])) if p in self.ranks]
            if not ranked:
                return [self.index[s] for s in syms]
            _, i = min(ranked)
            syms[i:i + 2] = [syms[i] + syms[i + 1]]

    def encode(self, text, add_special=True, parse_special=True):
        pieces = [text.encode()]
        specials = [i for i, t in enumerate(self.types) if t == 4 or (parse_special and t in (2, 3))]
        for i in sorted(specials, key=lambda i: -len(self.tokens[i])):  # longest first, as llama.cpp
            cut = []
            for p in pieces:
                if isinstance(p, int):
                    cut.append(p)
                    continue
                for k, part in enumerate(p.split(self.tokens[i].encode())):
                    cut += ([i] if k else []) + ([part] if part else [])
            pieces = cut
        ids = [self.bos] if add_special and self.add_bos else []
        for p in pieces:
            if isinstance(p, int):
                ids.append(p)
                continue
            for w in self.split(p.decode()):
                ids += self.word(w.encode())
        return ids

    def piece(self, i):
        """FORMAT.md's piece: the token's bytes, valid UTF-8 kept, other bytes as <0xNN>."""
        t = self.tokens[i]
        data = t.encode() if self.types[i] != 1 else bytes(CHAR_BYTE[c] for c in t)
        out, k = "", 0
        while k < len(data):
            for n in (1, 2, 3, 4):
                try:
                    ch = data[k:k + n].decode()
                except UnicodeDecodeError:
                    continue
                if len(ch) == 1 and ch != "\0":
                    out += ch
                    k += n
                    break
            else:
                out += f"<0x{data[k]:02X}>"
                k += 1
        return out


def hf_split(pattern):
    """A tokenizer.json pattern as Hugging Face applies it (every character is in some match)."""
    return lambda text: [m.group() for m in regex.finditer(pattern, text)]


def llama3_vocab():
    return Bpe(hf_split(LLAMA3), "llama-bpe", 240, True, True, hf_split(LLAMA3))


def qwen2_vocab():
    """Trained with Llama 3's pattern, so that it has merges of digits the Qwen2 pattern must keep apart."""
    return Bpe(hf_split(QWEN2), "qwen2", 240, False, False, hf_split(LLAMA3))


# llama.cpp's pre-tokenizers run their patterns one after the other, each over the pieces the last left
# (matches and the text between them), through std::regex: code points, or for patterns with \p{..} a
# "collapsed" text where each non-ASCII code point is a byte for its category and \p{X} means that byte or
# X's ASCII members (in which '~' is neither P nor S).  Emulated here with Python's regex module.
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
CJK = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373"
    "\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F"
    "\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
    "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D"
    "\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4"
    "\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D"
    "\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A"
    "\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2"
    "\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+")
LLAMA_CPP_STEPS = {
    "deepseek-llm": ["[\r\n]", DEEPSEEK_LETTERS, "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
                     r"\s+$", CJK, r"\p{N}+"],
    "deepseek-coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
    "smollm": [r"\p{N}", GPT2],
    "gpt-2": [GPT2],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    "qwen2": [QWEN2.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])")],
}
WHITE_SPACE = set(map(chr, [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))
CATEGORY_UNIT = {"N": "\xd1", "L": "\xd2", "P": "\xd3", "M": "\xd4", "S": "\xd5"}
CATEGORY_ASCII = {"N": "0-9", "L": "A-Za-z", "P": r"!-#%-*,-/:-;?-@\[-\]_\{\}", "S": r"\$\+<->\^`\|", "M": ""}


def llama_cpp_units(text, collapsed):
    import unicodedata
    out = []
    for c in text:
        if ord(c) < 128:
            out.append(c)
        elif c in WHITE_SPACE:
            out.append("\x0b")
        else:
            out.append(CATEGORY_UNIT.get(unicodedata.category(c)[0], "\xd0") if collapsed else c)
    return "".join(out)


def llama_cpp_pattern(pattern):
    """Each \\p{X} as llama.cpp rewrites it for the collapsed text."""
    def rewrite(m):
        inside = pattern[:m.start()].count("[") > pattern[:m.start()].count("]")
        body = CATEGORY_UNIT[m.group(1)] + CATEGORY_ASCII[m.group(1)]
        return body if inside else "[" + body + "]"
    return regex.sub(r"\\p\{(\w)\}", rewrite, pattern)


def llama_cpp_split(name):
    def split(text):
        lengths = [len(text)] if text else []
        for pattern in LLAMA_CPP_STEPS[name]:
            collapsed = "\\p{" in pattern and pattern != GPT2  # GPT-2's runs hand-written, on code points
            units = llama_cpp_units(text, collapsed)
            compiled = regex.compile(llama_cpp_pattern(pattern) if collapsed else pattern)
            out, start = [], 0
            for n in lengths:
                piece, at = units[start:start + n], 0
                for m in compiled.finditer(piece):
                    out += [m.start() - at] if m.start() > at else []
                    out.append(m.end() - m.start())
                    at = m.end()
                out += [n - at] if at < n else []
                start += n
            lengths = out
        words, at = [], 0
        for n in lengths:
            words.append(text[at:at + n])
            at += n
        return words
    return split


POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 + list("0123456789") * 2 +
        list(" " * 12 + "\t\n\r.,!?;:'\"()[]{}<>|~$%&*+-=_/\\@#^`") +
        ["'s", "'t", "'re", "'VE", "'m", "'LL", "'d", "é", "ß", "Ж", "中", "日本", "한", "\u0301", "\u00a0", "\u3000",
         "\u2028", "😀", "٣", "²", "½", "Ａ", "\u2003", "\u0085", "\x7f", "\x01", "\u2126", "\u212a", "。", "！",
         "<|im_start|>", "<|begin_of_text|>", "<tag>", "<|eot", "<|eot_id|>", "<|", "|>", " the", " little", "Lily",
         "1234567", "   \n", "\r\n\r\n", " zyzzyva"])


def random_texts(seed, count):
    import random
    rnd = random.Random(seed)
    texts = ["", " ", "Hello world", "I'm here, you're there; it'll work 12345678.", "<|im_start|>user\nHi<|im_end|>",
             "a zyzzyva"]
    while len(texts) < count:
        texts.append("".join(rnd.choice(POOL) for _ in range(rnd.randint(1, 30))))
    return texts


def tokenize(path, text, *flags):
    p = run("tokenize", path, "--text", text, "--ids-only", *flags)
    return [int(x) for x in p.stdout.split()]


def check_against_reference(v, path, seed):
    texts = random_texts(seed, 70)
    for i, text in enumerate(texts):
        for flags, kwargs in (((), {}), (("--no-bos", "--no-special"), {"add_special": False, "parse_special": False})):
            if i % 2 and flags:
                continue
            want = v.encode(text, **kwargs)
            got = tokenize(path, text, *flags)
            assert got == want, f"{v.pre} {flags} on {text!r}:\n got  {got}\n want {want}"
    print(f"{v.pre}: {len(texts)} texts match the reference")


def llama3_synthetic():
    """llama-bpe: the Llama 3 pattern, whole words looked up first, BOS added, specials cut out."""
    v = llama3_vocab()
    check_against_reference(v, v.write(os.path.join(workdir(), "llama3.gguf")), 3)


def qwen2_synthetic():
    """qwen2: digits one by one, no BOS, merges only."""
    v = qwen2_vocab()
    check_against_reference(v, v.write(os.path.join(workdir(), "qwen2.gguf")), 2)


def pretokenizers_synthetic():
    """deepseek-llm, deepseek-coder, falcon, smollm, gpt-2, default and qwen2 (llama.cpp's form) on vocabularies
    whose merges cross word boundaries, through the library (test_tokenizer encode), against llama.cpp's
    pre-tokenizer steps emulated with Python's regex module."""
    tool = sys.argv[2]
    d = workdir()
    for seed, name in enumerate(LLAMA_CPP_STEPS):
        v = Bpe(llama_cpp_split(name), name, 240, False, False)
        path = v.write(os.path.join(d, name + ".gguf"))
        texts = random_texts(100 + seed, 150)
        inp = os.path.join(d, name + ".inp")
        open(inp, "wb").write(b"".join(t.encode() + b"\n__ggml_vocab_test__\n" for t in texts))
        p = subprocess.run([tool, "encode", path, inp], capture_output=True, timeout=100)
        assert p.returncode == 0, p.stderr.decode()
        lines = p.stdout.decode().split("\n")
        for text, line in zip(texts, lines):
            want = v.encode(text)
            assert [int(x) for x in line.split()] == want, f"{name} on {text!r}:\n got  {line}\n want {want}"
        print(f"{name}: {len(texts)} texts match llama.cpp's steps")


# ---- llama.cpp's vectors through the command line ----

def vectors(name):
    path = vocab(name)
    texts = open(path + ".inp", "rb").read().split(b"\n__ggml_vocab_test__\n")
    assert texts[-1] == b""
    texts = texts[:-1]
    lines = open(path + ".out").read().split("\n")
    d = workdir()
    matched = 0
    for i, text in enumerate(texts):
        f = os.path.join(d, "in.txt")
        open(f, "wb").write(text)
        p = run("tokenize", path, "--text-file", f, "--no-bos", "--no-special", "--ids-only")
        got, want = p.stdout.decode().split(), lines[i].split()
        assert got == want, f"{name} vector {i} {text[:60]!r}:\n got  {got}\n want {want}"
        matched += 1
    assert matched == len(texts) >= 40
    print(f"{name}: {matched} of {len(texts)} vectors match")


def cli_output():
    """The default output: one token a line, id and quoted piece; BOS as the vocabulary asks."""
    p = run("tokenize", MODEL, "--text", "Once upon a time")
    assert p.stdout.decode().splitlines() == ["      1  '<s>'", "    403  ' Once'", "    407  ' upon'",
                                              "    261  ' a'", "    378  ' time'"], p.stdout
    v = llama3_vocab()
    path = v.write(os.path.join(workdir(), "llama3.gguf"))
    p = run("tokenize", path, "--text", "caf\u00e9 \U0001F600\n")
    lines = p.stdout.decode().splitlines()
    ids = v.encode("caf\u00e9 \U0001F600\n")
    assert [int(l.split()[0]) for l in lines] == ids
    for line, i in zip(lines, ids):
        piece = v.piece(i).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        assert line.endswith(f"'{piece}'"), (line, piece)
    assert any("<0xF0>" in l for l in lines), lines  # the emoji's bytes that are no token of their own
    assert run("tokenize", "--help").stdout.decode().startswith("usage: kvtrace tokenize")


# ---- chat templates ----

LLAMA3_TEMPLATE = ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                   " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}")
CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
LLAMA2_TEMPLATE = "{% if messages[0]['role'] == 'system' %}[INST] <<SYS>>\\n{{ system }}\\n<</SYS>>\\n\\n{% endif %}"


def chat():
    """--chat writes Llama 3, ChatML and Llama 2 turns as llama.cpp does; other templates are refused."""
    d = workdir()
    l3 = llama3_vocab()
    path = l3.write(os.path.join(d, "l3.gguf"), LLAMA3_TEMPLATE)
    want = l3.encode("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
                     "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert want[:2] == [l3.bos, l3.index["<|start_header_id|>"]]
    assert tokenize(path, "  Hi there ", "--chat", "--system", "Be brief. ") == want
    qw = qwen2_vocab()
    path = qw.write(os.path.join(d, "qw.gguf"), CHATML_TEMPLATE)
    want = qw.encode("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert want[0] == qw.index["<|im_start|>"]
    assert tokenize(path, "Hi there", "--chat") == want
    path = changed_copy(vocab("llama-spm"), "l2.gguf",
                        lambda kv: kv.__setitem__("tokenizer.chat_template", (STRING, LLAMA2_TEMPLATE.encode())))
    assert tokenize(path, "Hi", "--chat", "--system", "S") == tokenize(path, "[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]")
    assert tokenize(path, "Hi", "--chat")[:2] == [1, tokenize(path, "[INST]", "--no-bos")[0]]
    line = expect_clean_failure(run("tokenize", vocab("gpt-2"), "--text", "Hi", "--chat", check=False), vocab("gpt-2"))
    assert "no chat template" in line
    path = changed_copy(vocab("gpt-2"), "gemma.gguf",
                        lambda kv: kv.__setitem__("tokenizer.chat_template", (STRING, b"<start_of_turn>user")))
    line = expect_clean_failure(run("tokenize", path, "--text", "Hi", "--chat", check=False), path)
    assert "not one kvtrace applies" in line


# ---- a BPE prompt recorded ----

def bpe_model(v, name):
    """stories260K's weights with the synthetic BPE vocabulary in place of its SentencePiece one."""
    g = read_gguf(MODEL)
    kvs = {k: t for k, t in g["kvs"].items() if not k.startswith("tokenizer.")}
    tok = os.path.join(workdir(), "tok.gguf")
    v.write(tok)
    kvs.update(read_gguf(tok)["kvs"])
    kvs["general.architecture"] = (STRING, b"llama")
    g["kvs"] = kvs
    path = os.path.join(workdir(), name)
    write_gguf(path, g)
    return path


def record_bpe():
    """record --prompt on a byte-level BPE model: the ids of the reference, BOS first, pieces as FORMAT.md says."""
    v = llama3_vocab()
    assert len(v.tokens) <= 512
    model = bpe_model(v, "bpe.gguf")
    text = "Once upon a time, Lily said: caf\u00e9 \U0001F600 <|eot_id|>!"
    out = os.path.join(workdir(), "t.h5")
    run("record", model, "--prompt", text, "--generate", "4", "-o", out)
    want = v.encode(text)
    with h5py.File(out) as f:
        s = f["sequences/0000"]
        assert s.attrs["n_prompt"] == len(want)
        assert list(s["tokens"][:len(want)]) == want
        pieces = [p.decode() for p in s["pieces"][:]]
        assert pieces == [v.piece(int(i)) if i < len(v.tokens) else "" for i in s["tokens"][:]], pieces
        assert pieces[0] == "<|begin_of_text|>" and "<|eot_id|>" in pieces and "<0xF0>" in pieces, pieces


# ---- bad vocabularies ----

def bad_vocabularies():
    """Each problem: one line naming the file and the problem, exit 1; record --tokens still works."""
    def set_kv(key, t, value):
        return lambda kv: kv.__setitem__(key, (t, value))

    def merges(change):
        def apply(kv):
            items = list(kv["tokenizer.ggml.merges"][1][1])
            change(items)
            kv["tokenizer.ggml.merges"] = (ARRAY, (STRING, items))
        return apply

    def short_types(kv):
        t, (et, items) = kv["tokenizer.ggml.token_type"]
        kv["tokenizer.ggml.token_type"] = (t, (et, items[:-1]))

    cases = [
        ("unknown_pre.gguf", set_kv("tokenizer.ggml.pre", STRING, b"frobnicate-bpe"), "'frobnicate-bpe'"),
        ("truncated_merge.gguf", merges(lambda m: m.__setitem__(5, b"\xc4\xa0t")), "merge 5"),
        ("ghost_merge.gguf", merges(lambda m: m.__setitem__(7, b"\xc4\xa0t zzqqzzqq")), "not in the vocabulary"),
        ("bos_out_of_range.gguf", set_kv("tokenizer.ggml.bos_token_id", UINT32, 999999), "bos_token_id = 999999"),
        ("short_token_types.gguf", short_types, "token_type has 50256 entries for 50257 tokens"),
    ]
    for name, change, what in cases:
        path = changed_copy(vocab("gpt-2"), name, change)
        line = expect_clean_failure(run("tokenize", path, "--text", "Hello", check=False), path)
        assert what in line, (what, line)
    line = expect_clean_failure(run("tokenize", MODEL + ".missing", "--text", "x", check=False), "missing")
    line = expect_clean_failure(run("tokenize", vocab("gpt-2"), check=False), codes=(2,))
    # a model whose pre-tokenizer is unknown: text refused naming it, ids recorded
    v = llama3_vocab()
    v.pre = "frobnicate-bpe"
    model = bpe_model(v, "unknown_pre.gguf")
    out = os.path.join(workdir(), "t.h5")
    line = expect_clean_failure(run("record", model, "--prompt", "Hi", "-o", out, check=False), "--tokens")
    assert "frobnicate-bpe" in line
    run("record", model, "--tokens", "1,2,3", "-o", out)
    assert os.path.exists(out)


# ---- reliability findings ----

def f01_byte_fallback():
    """F01: a vocabulary without (all of) the 256 byte pieces: a clear error when a byte cannot be spelled,
    the right <0xNN> ids when it can, even when the byte pieces are not at ids 3..258."""
    out = os.path.join(workdir(), "o.h5")
    small = os.path.join(CORPUS, "F01-tiny_smallvocab.gguf")
    for cmd in (("record", small, "--prompt", "Once upon a time", "--generate", "5", "-o", out),
                ("tokenize", small, "--text", "Once upon a time")):
        line = expect_clean_failure(run(*cmd, check=False), small)
        assert "cannot spell a space" in line, line
    assert not os.path.exists(out)
    v256 = os.path.join(CORPUS, "F01-fuzzer-crash-q6k-vocab256.gguf")
    run("record", v256, "--prompt", "Once upon a time", "--generate", "5", "-o", out)
    want = [1] + [3 + b for b in "\u2581Once\u2581upon\u2581a\u2581time".encode()]
    with h5py.File(out) as f:
        assert list(f["sequences/0000/tokens"][:len(want)]) == want
        assert f["sequences/0000/pieces"][1].decode() == "<0xE2>"
    # the byte pieces shuffled, 300 pieces: ids follow the pieces, not their usual places
    def shuffle(kv):
        names = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in reversed(range(253))] + \
                [f"extra{i}".encode() for i in range(44)]
        kv["tokenizer.ggml.tokens"] = (ARRAY, (STRING, names))
        kv["tokenizer.ggml.scores"] = (ARRAY, (6, [0.0] * len(names)))
    path = changed_copy(v256, "shuffled.gguf", shuffle)
    got = tokenize(path, "Once")
    assert got == [1] + [3 + 252 - b for b in "\u2581Once".encode()], got


def f03_negative_bos():
    """F03: tokenizer.ggml.bos_token_id = -1: text prompts refused naming the key, ids recorded."""
    model = os.path.join(CORPUS, "F03-bos_neg.gguf")
    out = os.path.join(workdir(), "o.h5")
    line = expect_clean_failure(run("record", model, "--prompt", "Once upon a time", "--generate", "3", "-o", out,
                                    check=False), model)
    assert "bos_token_id = -1" in line, line
    run("record", model, "--tokens", "1,2", "--generate", "3", "-o", out)
    with h5py.File(out) as f:
        assert list(f["sequences/0000/tokens"][:2]) == [1, 2]


def f12_long_prompt():
    """F12: 32 KB and 1 MB prompts end in the context error at once (no quadratic encoding); a prompt that
    fits is recorded with the ids `tokenize` gives."""
    d = workdir()
    words = "Once upon a time there was a little girl named Lily who loved to play".split()
    for size in (32000, 1 << 20):
        text = " ".join(words[i % len(words)] for i in range(size // 4))[:size]
        prompt = os.path.join(d, f"p{size}.txt")
        open(prompt, "w").write(text)
        p = subprocess.run([KVTRACE, "record", MODEL, "--prompt-file", prompt, "-o", os.path.join(d, "o.h5")],
                           capture_output=True, timeout=60)
        line = expect_clean_failure(p, MODEL)
        assert "context of 2048" in line, line
    text = " ".join(words[i % len(words)] for i in range(1500))
    prompt = os.path.join(d, "fits.txt")
    open(prompt, "w").write(text)
    out = os.path.join(d, "fits.h5")
    run("record", MODEL, "--prompt-file", prompt, "-o", out)
    want = tokenize(MODEL, text)
    assert 1500 < len(want) <= 2048
    with h5py.File(out) as f:
        assert list(f["sequences/0000/tokens"][:]) == want


CASES = [llama3_synthetic, qwen2_synthetic, pretokenizers_synthetic, cli_output, chat, record_bpe, bad_vocabularies, f01_byte_fallback,
         f03_negative_bos, f12_long_prompt]
VECTOR_CASES = {f"vectors_{n}": (lambda n=n: vectors(n))
                for n in ("llama-spm", "deepseek-coder", "falcon", "gpt-2", "mpt", "refact", "starcoder")}
main({**{f.__name__: f for f in CASES}, **VECTOR_CASES})
