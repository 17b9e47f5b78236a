#!/usr/bin/env python3
"""Float64 reference for a requantized copy of the reference model (K-quant fidelity).

Runs ../shared/reference/ref_llama.py on another GGUF of the same model (same vocabulary), taking
each case's token ids from golden_public.json instead of rebuilding the tokenizer, so only numpy
and llama.cpp's gguf-py are needed (HF `tokenizers` is not). The output has golden_public.json's
format, for `scripts/fidelity.py --golden`.

    scripts/kquant-reference.py MODEL.gguf --gguf-py LLAMA_CPP/gguf-py --out golden.json [--reference DIR]
"""
import argparse
import json
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder (its dequantizers)")
ap.add_argument("--reference", default=os.environ.get("SPECDEC_REFERENCE", os.path.join(ROOT, "..", "shared", "reference")))
ap.add_argument("--out", required=True)
a = ap.parse_args()

sys.path[:0] = [a.gguf_py, a.reference]
# ref_llama imports HF tokenizers at the top; the ids come from the golden file instead.
stub = types.ModuleType("tokenizers")
for name in ["Tokenizer", "models", "pre_tokenizers", "decoders", "AddedToken"]:
    setattr(stub, name, None)
sys.modules.setdefault("tokenizers", stub)
import ref_llama  # noqa: E402

ids_of = {g["input"]: g["ids"] for g in json.load(open(os.path.join(a.reference, "golden_public.json")))}


class GoldenIds:
    def encode(self, text):
        return types.SimpleNamespace(ids=ids_of[text])

    def decode(self, ids, skip_special_tokens=False):
        return ""  # greedy_text is not used by fidelity.py


ref_llama.build_tokenizer = lambda reader: GoldenIds()
sys.argv = ["ref_llama.py", a.model, "--cases", os.path.join(a.reference, "cases_public.json"), "--out", a.out]
ref_llama.main()
