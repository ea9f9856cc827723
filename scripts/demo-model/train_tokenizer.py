#!/usr/bin/env python3
"""Train the demo model's byte-level BPE tokenizer on the King James Bible.

Writes a Hugging Face `tokenizer.json` (model BPE, ByteLevel pre-tokenizer and
decoder, exactly the GPT-2 pre-tokenization rules) and a `tokenizer_config.json`
with the special tokens and a small chat template.

The text comes from Debian's `bible-kjv-text` package (/usr/lib/bible.data,
public-domain KJV text). That file is a block container whose blocks are
Unix `compress` (LZW) streams; `gzip -d` decodes those, so nothing else is
needed. Only the training part of the text (the first ~98%, see
`split_documents`) is used to learn the merges.

This module is also imported by train_model.py and sample.py for the corpus
and for a small reference encoder/decoder of the tokenizer.json it writes.

Usage:
    /usr/bin/python3 scripts/demo-model/train_tokenizer.py --out public/demo
"""
import argparse
import heapq
import json
import os
import re
import struct
import subprocess
import sys
import unicodedata
from collections import Counter

BIBLE_DATA = "/usr/lib/bible.data"

SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"]
EOS = "<|endoftext|>"

# Book abbreviations used by bible.data, in canonical order, and full names.
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"),
    ("Prv", "Proverbs"), ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"),
    ("Isa", "Isaiah"), ("Jer", "Jeremiah"), ("Lam", "Lamentations"),
    ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"),
    ("Nahum", "Nahum"), ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"),
    ("Zec", "Zechariah"), ("Mal", "Malachi"), ("Mat", "Matthew"), ("Mark", "Mark"),
    ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"), ("Rom", "Romans"),
    ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"),
    ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"),
    ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"),
    ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"),
    ("Rev", "Revelation"),
]

# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------


def read_bible_data(path=BIBLE_DATA):
    """Return the raw text stored in bible-kjv-text's bible.data.

    Layout (big-endian): 80-byte magic "EC02Compressed Data File" (NUL padded),
    u32 reserved, u32 uncompressed block size, u32 block count n, then n+1 u32
    absolute file offsets delimiting the blocks. Each block is an LZW stream in
    `compress` format without its 3-byte header (1F 9D 90, which is stored
    once, in front of the first block).
    """
    if not os.path.exists(path):
        sys.exit(f"{path} not found: install Debian's bible-kjv-text package "
                 "(apt-get install bible-kjv-text)")
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"EC02Compressed Data File"):
        sys.exit(f"{path}: unexpected magic {data[:24]!r}")
    _, block_size, n = struct.unpack(">III", data[80:92])
    offsets = struct.unpack(">%dI" % (n + 1), data[92:92 + 4 * (n + 1)])
    if offsets[-1] != len(data):
        sys.exit(f"{path}: last block offset {offsets[-1]} != file size {len(data)}")
    header = data[offsets[0] - 3:offsets[0]]
    if header[:2] != b"\x1f\x9d":
        sys.exit(f"{path}: no compress header before the first block")
    parts = []
    for i in range(n):
        blob = header + data[offsets[i]:offsets[i + 1]]
        r = subprocess.run(["gzip", "-dc"], input=blob, capture_output=True)
        if r.returncode != 0:
            sys.exit(f"{path}: block {i} failed to decompress: {r.stderr.decode()}")
        if i < n - 1 and len(r.stdout) != block_size:
            sys.exit(f"{path}: block {i} has {len(r.stdout)} bytes, expected {block_size}")
        parts.append(r.stdout)
    return b"".join(parts).decode("ascii")


VERSE_RE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)$")


def load_documents(path=BIBLE_DATA):
    """The Bible as a list of chapters, in canonical order.

    Each chapter becomes one document: a heading line ("Genesis 1") followed
    by one verse per line, without verse references.
    """
    raw = read_bible_data(path)
    names = dict(BOOKS)
    chapters = []  # [(book, chapter, [verses])]
    for line in raw.split("\n")[1:]:  # line 0 is the file's title
        if not line.strip():
            continue
        m = VERSE_RE.match(line)
        if not m:
            sys.exit(f"unexpected line in bible.data: {line[:80]!r}")
        book, chap, text = names[m.group(1)], int(m.group(2)), m.group(4).strip()
        text = re.sub(r"\s+", " ", text)
        if not chapters or chapters[-1][0] != book or chapters[-1][1] != chap:
            chapters.append((book, chap, []))
        chapters[-1][2].append(text)
    if len(chapters) != 1189:
        sys.exit(f"expected 1189 chapters, found {len(chapters)}")
    return [f"{book} {chap}\n" + "\n".join(verses) for book, chap, verses in chapters]


def split_documents(docs, val_fraction=0.02):
    """Hold out the last ~val_fraction of the text (whole chapters)."""
    total = sum(len(d) for d in docs)
    acc = 0
    for i, d in enumerate(docs):
        if acc >= total * (1.0 - val_fraction):
            return docs[:i], docs[i:]
        acc += len(d)
    raise AssertionError("corpus too small to split")


# --------------------------------------------------------------------------
# Byte-level pre-tokenization (GPT-2 rules, as in HF's ByteLevel pre-tokenizer)
# --------------------------------------------------------------------------


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Bytes that are printable and not whitespace map to the same code point;
    the remaining ones get the code points 256, 257, ... in byte order.
    """
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
            + list(range(ord("\xae"), ord("\xff") + 1)))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def _class_of(predicate):
    """A regex character class (body only) for all code points matching predicate."""
    ranges = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            ok = False
        else:
            ok = predicate(chr(cp))
        if ok:
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            ranges.append((start, prev))
            start = None
    if start is not None:
        ranges.append((start, prev))

    def esc(cp):
        return "\\U%08x" % cp

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def _build_pretokenizer():
    # \p{L}, \p{N} and \s with Unicode semantics (Python's `re` lacks \p{..}).
    letters = _class_of(lambda c: unicodedata.category(c).startswith("L"))
    numbers = _class_of(lambda c: unicodedata.category(c).startswith("N"))
    white = set([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])  # Unicode White_Space
    space = _class_of(lambda c: ord(c) in white)
    L, N, S = f"[{letters}]", f"[{numbers}]", f"[{space}]"
    pattern = (rf"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?[^{space}{letters}{numbers}]+"
               rf"|{S}+(?!{'[^' + space + ']'})|{S}+")
    return re.compile(pattern)


_PRETOKENIZER = None


def pretokenize(text):
    """Split text the way GPT-2 / HF ByteLevel(use_regex=True) does and map each
    piece to its byte-level unicode string."""
    global _PRETOKENIZER
    if _PRETOKENIZER is None:
        _PRETOKENIZER = _build_pretokenizer()
    return ["".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))
            for piece in _PRETOKENIZER.findall(text)]


# --------------------------------------------------------------------------
# BPE training
# --------------------------------------------------------------------------


def train_bpe(word_counts, num_merges, log_every=500):
    """Learn merges from {pretoken string: count}.

    Symbols start as single byte-level characters. At each step the most
    frequent adjacent pair (ties: smallest pair of strings) becomes a new
    symbol. Pair statistics are updated incrementally, only for the words that
    contain the merged pair.
    """
    words = [list(w) for w in word_counts]
    counts = [word_counts[w] for w in word_counts]
    pair_count = Counter()
    pair_words = {}
    for wi, sym in enumerate(words):
        c = counts[wi]
        for a, b in zip(sym, sym[1:]):
            pair_count[(a, b)] += c
            pair_words.setdefault((a, b), set()).add(wi)

    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < num_merges and heap:
        negc, pair = heapq.heappop(heap)
        cur = pair_count.get(pair, 0)
        if cur <= 0:
            continue
        if -negc != cur:  # stale entry: push the current count back
            heapq.heappush(heap, (-cur, pair))
            continue
        if cur < 2:
            break
        a, b = pair
        new = a + b
        merges.append(pair)
        changed = Counter()
        for wi in list(pair_words.get(pair, ())):
            sym = words[wi]
            c = counts[wi]
            for x, y in zip(sym, sym[1:]):
                changed[(x, y)] -= c
                s = pair_words.get((x, y))
                if s is not None:
                    s.discard(wi)
            out = []
            i = 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            words[wi] = out
            for x, y in zip(out, out[1:]):
                changed[(x, y)] += c
                pair_words.setdefault((x, y), set()).add(wi)
        for p, d in changed.items():
            if d == 0:
                continue
            pair_count[p] += d
            if pair_count[p] <= 0:
                del pair_count[p]
            elif d > 0:
                heapq.heappush(heap, (-pair_count[p], p))
        pair_count.pop(pair, None)
        if log_every and len(merges) % log_every == 0:
            print(f"  {len(merges)} merges, last {new!r} ({cur})", flush=True)
    return merges


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def build_tokenizer_json(merges):
    vocab = {}
    for t in SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[BYTE_TO_CHAR[b]] = len(vocab)
    for a, b in merges:
        assert a in vocab and b in vocab and a + b not in vocab
        vocab[a + b] = len(vocab)
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for t in SPECIAL_TOKENS]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b in merges],
        },
    }


def build_tokenizer_config(max_len):
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for i, t in enumerate(SPECIAL_TOKENS)
        },
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "bos_token": EOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": max_len,
        "pad_token": EOS,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": EOS,
    }


class ByteLevelBPE:
    """Reference encoder/decoder for the tokenizer.json written above
    (no special-token parsing in encode: special tokens are added by id)."""

    def __init__(self, tokenizer_json_path):
        with open(tokenizer_json_path, encoding="utf-8") as f:
            tj = json.load(f)
        self.vocab = tj["model"]["vocab"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(tj["model"]["merges"])}
        self.special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        self.cache = {}

    def _bpe(self, word):
        sym = list(word)
        while len(sym) > 1:
            best = None
            for p in zip(sym, sym[1:]):
                r = self.ranks.get(p)
                if r is not None and (best is None or r < best[0]):
                    best = (r, p)
            if best is None:
                break
            a, b = best[1]
            out = []
            i = 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            sym = out
        return [self.vocab[s] for s in sym]

    def encode(self, text):
        ids = []
        for w in pretokenize(text):
            got = self.cache.get(w)
            if got is None:
                got = self._bpe(w)
                self.cache[w] = got
            ids.extend(got)
        return ids

    def decode(self, ids, skip_special=True):
        out = []
        buf = bytearray()
        for i in ids:
            t = self.id_to_token[int(i)]
            if t in self.special:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
                if not skip_special:
                    out.append(t)
                continue
            buf.extend(CHAR_TO_BYTE[c] for c in t)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="public/demo")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()

    docs = load_documents()
    train_docs, val_docs = split_documents(docs)
    print(f"{len(docs)} chapters; training on {len(train_docs)} "
          f"({sum(map(len, train_docs))} chars), holding out {len(val_docs)} "
          f"({sum(map(len, val_docs))} chars)", flush=True)
    word_counts = Counter()
    for d in train_docs:
        word_counts.update(pretokenize(d))
    print(f"{len(word_counts)} distinct pre-tokens", flush=True)
    num_merges = args.vocab_size - len(SPECIAL_TOKENS) - 256
    merges = train_bpe(word_counts, num_merges)
    if len(merges) != num_merges:
        sys.exit(f"only {len(merges)} merges found, wanted {num_merges}")

    os.makedirs(args.out, exist_ok=True)
    tj = build_tokenizer_json(merges)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(build_tokenizer_config(args.max_len), f, ensure_ascii=False, indent=2)
        f.write("\n")

    tok = ByteLevelBPE(os.path.join(args.out, "tokenizer.json"))
    for name, part in (("train", train_docs), ("validation", val_docs)):
        chars = sum(len(d) for d in part)
        ntok = sum(len(tok.encode(d)) for d in part)
        print(f"{name}: {ntok} tokens, {chars / ntok:.3f} chars/token")
    sample = "In the beginning God created the heaven and the earth."
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    print(f"vocab {len(tj['model']['vocab'])}; {sample!r} -> {ids}")


if __name__ == "__main__":
    main()
