#!/usr/bin/python3
"""Golden vectors for model/tokenizer.go, computed with the reference SentencePiece.

Run by hand (not in CI) from the repository root:

    /usr/bin/python3 tools/tokenizer_goldens.py

Needs Debian's python3-sentencepiece (written against 0.1.97). It reads
testdata/tokenizer/tiny.model and testdata/tokenizer/nobyte.model and writes:

  testdata/golden/tokenizer.json
      [{"text": ..., "ids": [...], "decoded": sp.decode(ids)}, ...] for tiny.model.
  testdata/golden/tokenizer_variants.json
      {"variants": [{"name", "model", "append_hex", "encode": [{"text_hex", "ids",
      "decoded"}], "decode": [{"ids", "decoded"}]}]}
      Each variant is a committed model file with the bytes of append_hex appended.
      Appending a serialized field to a protobuf merges it into the message, so
      this is how the variants flip normalizer_spec / trainer_spec switches or add
      pieces without committing more model files. "encode" holds texts as hex
      (some are invalid UTF-8); "decode" holds seeded random id sequences.

The output is deterministic: rerunning must give byte-identical files.
"""

import json
import os
import random
import struct
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = os.path.join(ROOT, "testdata", "tokenizer")
GOLDEN = os.path.join(ROOT, "testdata", "golden")

LONG = (
    "The quick brown fox jumps over the lazy dog. Tokenizers split text into "
    "pieces; SentencePiece treats the input as a raw stream of Unicode characters, "
    "so whitespace is just another symbol (written as U+2581). Byte fallback means "
    "that any character missing from the vocabulary, such as 🦊 or 齉, is spelled "
    "with <0xNN> byte pieces instead of <unk>. In 2024, prices rose 3.5% to $1,234.56; "
    "see https://example.org/a/b?c=d&e=f#g for details.\n\tIndented line\r\n"
    "中文段落：机器学习是人工智能的一个分支。日本語の文章もあります。한국어 문장도 있습니다. "
)

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "This License applies to any program or other work.",
    "你好，世界！",
    "机器学习是人工智能的一个分支。",
    "日本語のテキストです。カタカナとひらがな。",
    "ｶﾀｶﾅ ＡＢＣ１２３",
    "안녕하세요, 세계!",
    "한국어 문장입니다.",
    "😀",
    "👨‍👩‍👧‍👦 family",
    "👍🏽 🇨🇳 🏳️‍🌈",
    "☃☃☃",
    "func main() {\n\tfmt.Println(\"hi\")\n}\n",
    "def f(x):\n    return x * 2\n",
    "\t\tdouble tab",
    "a    b     c",
    "   leading spaces",
    "trailing spaces   ",
    " ",
    "  ",
    "                                        ",
    "\n",
    "line1\nline2\n\nline4",
    "windows\r\nline\r\n",
    "1234567890",
    "3.14159 and 2,718,281",
    "https://example.com/path?q=1&r=2#frag",
    "user@example.org",
    "Go语言は한국어 mixed текст",
    "Привет, мир!",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "∑ x² ≤ ∞, α→β",
    "e\u0301 vs \u00e9",
    "zero\u200bwidth\u00a0nbsp",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀",
    "<|im_start|>user\n",
    "<|im_end|>",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<s>",
    "</s>",
    "<unk>",
    "<0x41>",
    "\u2581 literal lower one eighth block",
    "{\"a\": [1, 2, 3], \"b\": null}",
    "# Title\n\n- item one\n- item two\n",
    "HELLO hello HeLLo",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "~~~~~~~~~~~~~~~~~~~~~~~~",
    "control\x00chars\x01\x7f",
    "don't stop",
    "",
    LONG,
    LONG * 4,
]

# Extra inputs for the variants, as bytes: include invalid UTF-8.
EXTRA_BYTES = [
    b"a\xffb",
    b"\xe4\xb8",
    b"\xe4\xb8a",
    b"\xed\xa0\x80",  # encoded surrogate
    b"\xc0\xaf",  # overlong
    b"\xf4\x90\x80\x80",  # > U+10FFFF
    b"\x80\x80 x",
    b" \xff ",
    b"  hello   world  ",
    b"   ",
    b" x",
    b"x ",
    b"hello",
    b"hell",
    b"hellx hello",
    b"<tool> <to <too <tool>x <t",
    b"[UNUSED_0] <|im_end|>",
    b"\xe2\x98\x83 \xe2\x98\x83\xe2\x98\x83x\xe2\x98\x83",
]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, v):
    return varint(field << 3 | 0) + varint(v)


def f_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def f_float(field, x):
    return varint(field << 3 | 5) + struct.pack("<f", x)


def piece(text, score, typ):
    # ModelProto.pieces = 1; SentencePiece{piece=1, score=2, type=3}
    return f_bytes(1, f_bytes(1, text.encode()) + f_float(2, score) + f_varint(3, typ))


NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def normalizer(**kw):
    # ModelProto.normalizer_spec = 3; add_dummy_prefix=3,
    # remove_extra_whitespaces=4, escape_whitespaces=5
    nums = {"add_dummy_prefix": 3, "remove_extra_whitespaces": 4, "escape_whitespaces": 5}
    return f_bytes(3, b"".join(f_varint(nums[k], int(v)) for k, v in kw.items()))


def trainer(**kw):
    # ModelProto.trainer_spec = 2; treat_whitespace_as_suffix=24
    nums = {"treat_whitespace_as_suffix": 24}
    return f_bytes(2, b"".join(f_varint(nums[k], int(v)) for k, v in kw.items()))


VARIANTS = [
    ("tiny", "tiny.model", b""),
    ("tiny+dummy_prefix", "tiny.model", normalizer(add_dummy_prefix=True)),
    ("tiny+remove_extra_whitespaces", "tiny.model", normalizer(remove_extra_whitespaces=True)),
    ("tiny+dummy_prefix+remove_extra_whitespaces", "tiny.model",
     normalizer(add_dummy_prefix=True, remove_extra_whitespaces=True)),
    ("tiny+no_escape", "tiny.model", normalizer(escape_whitespaces=False)),
    ("tiny+no_escape+dummy_prefix+remove_extra_whitespaces", "tiny.model",
     normalizer(add_dummy_prefix=True, remove_extra_whitespaces=True, escape_whitespaces=False)),
    ("tiny+suffix+dummy_prefix", "tiny.model",
     trainer(treat_whitespace_as_suffix=True) + normalizer(add_dummy_prefix=True)),
    ("tiny+suffix", "tiny.model", trainer(treat_whitespace_as_suffix=True)),
    ("tiny+extra_pieces", "tiny.model",
     piece("<tool>", 0, USER_DEFINED) + piece("<to", 0, USER_DEFINED)
     + piece("hell", 100, UNUSED) + piece("hello", 50, NORMAL)
     + piece("▁▁▁▁▁▁▁▁▁▁", 200, UNUSED) + piece("☃", 0, CONTROL)),
    ("nobyte", "nobyte.model", b""),
    ("nobyte+no_dummy_prefix", "nobyte.model", normalizer(add_dummy_prefix=False)),
]


def random_id_seqs(sp, rng, n):
    size = sp.get_piece_size()
    byte_ids = {}
    for i in range(size):
        if sp.is_byte(i):
            byte_ids[int(sp.id_to_piece(i)[3:5], 16)] = i
    ws = [i for i in range(size) if sp.id_to_piece(i).startswith("\u2581")]
    special = [i for i in range(size) if sp.is_control(i) or sp.is_unknown(i)]
    chars = "aé€😀日\u2581"
    seqs = [[], [0], [1], [1, 2]]
    while len(seqs) < n:
        seq = []
        for _ in range(rng.randrange(1, 12)):
            r = rng.random()
            if r < 0.25 and byte_ids:
                b = chars[rng.randrange(len(chars))].encode()
                if rng.random() < 0.3:
                    b = b[: rng.randrange(len(b) + 1)]
                if rng.random() < 0.1:
                    b = bytes([rng.randrange(256)])
                seq += [byte_ids[x] for x in b]
            elif r < 0.45:
                seq.append(ws[rng.randrange(len(ws))])
            elif r < 0.55:
                seq.append(special[rng.randrange(len(special))])
            else:
                seq.append(rng.randrange(size))
        seqs.append(seq)
    return seqs


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(TOK, "tiny.model"))
    out = []
    for t in TEXTS:
        ids = sp.encode(t)
        out.append({"text": t, "ids": ids, "decoded": sp.decode(ids)})
    with open(os.path.join(GOLDEN, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")

    variants = []
    rng = random.Random(20240613)
    for name, model, extra in VARIANTS:
        with open(os.path.join(TOK, model), "rb") as f:
            data = f.read() + extra
        vsp = spm.SentencePieceProcessor()
        vsp.LoadFromSerializedProto(data)
        enc = []
        for b in [t.encode() for t in TEXTS] + EXTRA_BYTES:
            ids = vsp.encode(b)
            enc.append({"text_hex": b.hex(), "ids": ids, "decoded": vsp.decode(ids)})
        dec = []
        for ids in random_id_seqs(vsp, rng, 150):
            dec.append({"ids": ids, "decoded": vsp.decode(ids)})
        variants.append({"name": name, "model": model, "append_hex": extra.hex(),
                         "encode": enc, "decode": dec})
    with open(os.path.join(GOLDEN, "tokenizer_variants.json"), "w", encoding="utf-8") as f:
        json.dump({"sentencepiece": spm.__version__, "variants": variants}, f,
                  ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote %d texts, %d variants" % (len(out), len(variants)), file=sys.stderr)


if __name__ == "__main__":
    main()
