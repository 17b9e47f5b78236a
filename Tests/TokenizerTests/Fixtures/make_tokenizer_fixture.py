#!/usr/bin/env python3
"""Regenerates tokenizer_crosscheck.json: random strings and their token ids from HF `tokenizers`,
built from the SmolLM2 GGUF exactly as ../../../../shared/reference/ref_llama.py builds it, with
each of the three pre-tokenizers (smollm, gpt2, llama-bpe) over the same vocabulary and merges.

    pip install gguf tokenizers
    python3 make_tokenizer_fixture.py ~/.cache/specdec/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json, os, random, string, sys
import gguf
from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, AddedToken

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def build(r, pre):
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    types = r.fields["tokenizer.ggml.token_type"].contents()
    mf = r.fields["tokenizer.ggml.merges"]
    merges = [bytes(mf.parts[i]).decode("utf-8") for i in mf.data]
    vocab = {t: i for i, t in enumerate(toks)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False))
    if pre == "smollm":
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre == "gpt2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    return tk


WS = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c",
      "\u1680", "\u2003", "\u202f", "\u205f", "\u180e", "\u200b", "\ufeff"]
NUMS = ["\u0663", "\u096b", "\uff10", "\uff19", "\u00b2", "\u00bd", "\u216b", "\U0001d7d8", "\u2460"]
WORDS = ["naïve", "café", "日本語", "Привет", "مرحبا", "שלום", "ελληνικά", "한국어", "ไทย", "हिन्दी",
         "straße", "ǅemal", "ſtate", "ﬁne", "e\u0301", "\u0301", "Ω", "µ",
         "\U00010940\U00010941", "x\ua7ce"]  # the last two: letters new in Unicode 17, unassigned for HF
EMOJI = ["🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "☕", "❤️", "🫠"]
CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'RE", "'Ve", "'ſ", "'LL", "'x", "'", "''s"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_", "<|im_start|", "<jupyter_code>"]
PLANES = [0, 1, 2, 3, 7, 12, 14, 15, 16]


def rand_scalar(rng):
    while True:
        p = rng.choice(PLANES + [0, 0])
        cp = p * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def piece(rng):
    k = rng.randrange(12)
    if k == 0:
        w = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 10)))
        return rng.choice(["", " ", " ", "  "]) + w
    if k == 1:
        return "".join(rng.choice(WS) for _ in range(rng.randint(1, 4)))
    if k == 2:
        return rng.choice(["", " "]) + "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 8)))
    if k == 3:
        return rng.choice(NUMS) * rng.randint(1, 4)
    if k == 4:
        return "".join(rng.choice(string.punctuation) for _ in range(rng.randint(1, 4)))
    if k == 5:
        return rng.choice(CONTR)
    if k == 6:
        return rng.choice(["", " "]) + rng.choice(WORDS)
    if k == 7:
        return rng.choice(EMOJI)
    if k == 8:
        return "".join(rand_scalar(rng) for _ in range(rng.randint(1, 4)))
    if k == 9:
        return rng.choice(SPECIAL)
    if k == 10:
        return rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\u0080", "\u00ad", "\x04", "\x1d", "!\x04!", "ab\x13cd"])
    return " " * rng.randint(1, 3) + rng.choice(string.ascii_lowercase)


def main():
    r = gguf.GGUFReader(sys.argv[1])
    rng = random.Random(20250601)
    counts = {"smollm": 2000, "gpt2": 350, "llama-bpe": 350}
    out = {}
    for pre, n in counts.items():
        tk = build(r, pre)
        cases = []
        for _ in range(n):
            s = "".join(piece(rng) for _ in range(rng.randint(1, 4)))
            cases.append({"s": s, "ids": tk.encode(s).ids})
        out[pre] = cases
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_crosscheck.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    main()
