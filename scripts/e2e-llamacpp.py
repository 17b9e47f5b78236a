#!/usr/bin/env python3
"""End to end against llama.cpp on the held-out text prompts of checkpoints/eval.

For each prompt, in turn on the same machine: llama.cpp's `llama-completion` decodes it greedily
(the model's chat template with its default system turn, --ignore-eos so that every run times N
tokens), then `specdec decode --compare --json` decodes it plainly and speculatively in one
process (outputs compared). Prints each prompt's decode rates and the medians: llama.cpp,
specdec plain, specdec speculative, and the speculative rate over llama.cpp's.

Downloads nothing and builds nothing:
  LLAMA_COMPLETION  path of llama.cpp's llama-completion binary (required)
  SPECDEC_BIN       specdec binary (default .build/release/specdec)
  SPECDEC_MODEL     model (default: the one scripts/setup.sh fetched)
  DRAFT             draft argument (default checkpoints/vispec-draft.safetensors+ngram)
  N, THREADS, LIMIT tokens per prompt (128), threads (2), prompts (14)
"""
import json, os, re, statistics, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
llama = os.environ.get("LLAMA_COMPLETION") or sys.exit("e2e-llamacpp: set LLAMA_COMPLETION to llama.cpp's llama-completion binary")
specdec = os.environ.get("SPECDEC_BIN", os.path.join(root, ".build/release/specdec"))
model = os.environ.get("SPECDEC_MODEL", os.path.expanduser("~/.cache/specdec/SmolLM2-135M-Instruct.Q4_1.gguf"))
draft = os.environ.get("DRAFT", "checkpoints/vispec-draft.safetensors+ngram")
n, threads, limit = int(os.environ.get("N", 128)), int(os.environ.get("THREADS", 2)), int(os.environ.get("LIMIT", 14))
for path in (llama, specdec, model):
    if not os.path.exists(path):
        sys.exit(f"e2e-llamacpp: {path}: no such file")

prompts = [json.loads(line) for line in open(os.path.join(root, "checkpoints/eval/prompts.jsonl"))]
prompts = [p["prompt"] for p in prompts if p.get("kind") == "text"][:limit]
# SmolLM2-Instruct's template, as specdec renders it (system turn included when none is given).
template = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
rate = re.compile(r"\beval time =\s*[\d.]+ ms /\s*(\d+) runs.*?([\d.]+) tokens per second")

rows = []
for i, prompt in enumerate(prompts):
    out = subprocess.run([llama, "-m", model, "-p", template.format(prompt), "-n", str(n), "-t", str(threads),
                          "--temp", "0", "--ignore-eos", "-no-cnv", "--no-display-prompt"],
                         capture_output=True, text=True, timeout=300)
    found = [m for m in rate.finditer(out.stderr + out.stdout) if "prompt" not in m.group(0)]
    if out.returncode != 0 or not found:
        sys.exit(f"e2e-llamacpp: llama-completion failed on prompt {i}:\n{out.stderr[-2000:]}")
    llama_rate = float(found[-1].group(2))
    out = subprocess.run([specdec, "decode", "-m", model, "-p", prompt, "-n", str(n), "-t", str(threads),
                          "--draft", draft, "--compare", "--json"], capture_output=True, text=True, timeout=300, cwd=root)
    if out.returncode != 0:
        sys.exit(f"e2e-llamacpp: specdec failed on prompt {i}:\n{out.stderr[-2000:]}")
    s = json.loads(out.stdout)["stats"]
    rows.append((llama_rate, s["plain_tokens_per_s"], s["tokens_per_s"], s["generated_token_count"], s["identical"]))
    print(f"{i:2d}  llama.cpp {llama_rate:6.1f}  specdec plain {rows[-1][1]:6.1f}  speculative {rows[-1][2]:6.1f} tok/s"
          f"  ({rows[-1][3]} tokens, identical {rows[-1][4]})  {prompt[:50]!r}", flush=True)

med = lambda k: statistics.median(r[k] for r in rows)
print(f"\nmedians over {len(rows)} prompts, {threads} threads, {n} tokens at most:")
print(f"llama.cpp {med(0):.1f} tok/s, specdec plain {med(1):.1f} tok/s ({statistics.median(r[1] / r[0] for r in rows):.2f}x llama.cpp), "
      f"speculative {med(2):.1f} tok/s ({statistics.median(r[2] / r[0] for r in rows):.2f}x llama.cpp, "
      f"{statistics.median(r[2] / r[1] for r in rows):.2f}x plain); identical {sum(r[4] for r in rows)}/{len(rows)}")
