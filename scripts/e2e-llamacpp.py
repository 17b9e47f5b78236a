#!/usr/bin/env python3
"""End to end against llama.cpp on the held-out prompts of checkpoints/eval, text and images.

For each prompt, in turn on the same machine: llama.cpp decodes it greedily (text through
`llama-completion` with the model's chat template and its default system turn; image prompts
through `llama-mtmd-cli` with the demo tower, a real mmproj file; --ignore-eos so that every run
times N tokens), then `specdec decode --compare --json` decodes it plainly and speculatively in
one process (outputs compared). Prints each prompt's decode rates and, per kind, the medians:
llama.cpp, specdec plain, specdec speculative, the speculative rate over llama.cpp's and over
plain, and the lowest speculative/plain ratio of any prompt.

Downloads nothing and builds nothing:
  LLAMA_COMPLETION  path of llama.cpp's llama-completion binary (text prompts)
  LLAMA_MTMD        path of llama.cpp's llama-mtmd-cli binary (image prompts)
  KIND              text, image or all (default: all those whose binary is set)
  SPECDEC_BIN       specdec binary (default .build/release/specdec)
  SPECDEC_MODEL     model (default: the one scripts/setup.sh fetched)
  DRAFT             draft argument (default checkpoints/vispec-draft.safetensors+ngram)
  N, THREADS, LIMIT tokens per prompt (128), threads (2), prompts per kind (14)
  REPS              runs per prompt (3): each figure of a prompt is the median of its runs, and its
                    speculative/plain ratio the median of the runs' ratios (each run measures both
                    side by side in one process), so one run slowed by the machine moves nothing
  MIN_SECONDS       a prompt whose answer is short runs specdec again (not llama.cpp, which always
                    times N tokens) until its speculative decoding has taken this long in all
                    (default 1.0), at most 5 x REPS runs: a 15-token answer decodes in about 50 ms,
                    where one stall of the shared machine moves a ratio by 20%
"""
import json, os, re, statistics, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binaries = {"text": os.environ.get("LLAMA_COMPLETION"), "image": os.environ.get("LLAMA_MTMD")}
kinds = [k for k in ("text", "image") if os.environ.get("KIND", "all") in (k, "all") and binaries[k]]
if not kinds:
    sys.exit("e2e-llamacpp: set LLAMA_COMPLETION (llama-completion, text prompts) and/or LLAMA_MTMD (llama-mtmd-cli, image prompts)")
specdec = os.environ.get("SPECDEC_BIN", os.path.join(root, ".build/release/specdec"))
model = os.environ.get("SPECDEC_MODEL", os.path.expanduser("~/.cache/specdec/SmolLM2-135M-Instruct.Q4_1.gguf"))
tower = os.path.join(root, "checkpoints/demo-tower.gguf")
draft = os.environ.get("DRAFT", "checkpoints/vispec-draft.safetensors+ngram")
n, threads, limit = int(os.environ.get("N", 128)), int(os.environ.get("THREADS", 2)), int(os.environ.get("LIMIT", 14))
reps = int(os.environ.get("REPS", 3))
min_seconds = float(os.environ.get("MIN_SECONDS", 1.0))
for path in [specdec, model, tower] + [binaries[k] for k in kinds]:
    if not os.path.exists(path):
        sys.exit(f"e2e-llamacpp: {path}: no such file")

prompts = [json.loads(line) for line in open(os.path.join(root, "checkpoints/eval/prompts.jsonl"))]
# SmolLM2-Instruct's template, as specdec renders it (system turn included when none is given).
template = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
rate = re.compile(r"\beval time =\s*[\d.]+ ms /\s*(\d+) runs.*?([\d.]+) tokens per second")


def llama_rate(kind, p, i):
    common = ["-m", model, "-n", str(n), "-t", str(threads), "--temp", "0", "--ignore-eos"]
    if kind == "text":
        cmd = [binaries[kind], *common, "-p", template.format(p["prompt"]), "-no-cnv", "--no-display-prompt"]
    else:
        # llama-mtmd-cli applies the model's chat template itself; the image goes before the text, as in specdec.
        # (-lv 4: it prints its timings at the info level only then).
        cmd = [binaries[kind], *common, "--mmproj", tower, "--image", os.path.join(root, "checkpoints/eval", p["image"]),
               "-p", p["prompt"], "-lv", "4"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    found = [m for m in rate.finditer(out.stderr + out.stdout) if "prompt" not in m.group(0)]
    if out.returncode != 0 or not found:
        sys.exit(f"e2e-llamacpp: {os.path.basename(binaries[kind])} failed on {kind} prompt {i}:\n{out.stderr[-2000:]}")
    return float(found[-1].group(2))


summary = []
for kind in kinds:
    rows = []
    for i, p in enumerate([p for p in prompts if p.get("kind") == kind][:limit]):
        runs, llamas, spent = [], [], 0.0
        while len(runs) < reps or (spent < min_seconds and len(runs) < 5 * reps):
            if len(llamas) < reps:
                llamas.append(llama_rate(kind, p, i))
            cmd = [specdec, "decode", "-m", model, "-p", p["prompt"], "-n", str(n), "-t", str(threads),
                   "--draft", draft, "--compare", "--json"]
            if kind == "image":
                cmd += ["--mmproj", tower, "--image", os.path.join(root, "checkpoints/eval", p["image"])]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
            if out.returncode != 0:
                sys.exit(f"e2e-llamacpp: specdec failed on {kind} prompt {i}:\n{out.stderr[-2000:]}")
            s = json.loads(out.stdout)["stats"]
            spent += s["decode_seconds"]
            # Index 0 is llama.cpp's rate, which is measured apart (REPS times at most).
            runs.append((None, s["plain_tokens_per_s"], s["tokens_per_s"], s["generated_token_count"], s["identical"], s["tau"],
                         s["tokens_per_s"] / s["plain_tokens_per_s"]))
        m = lambda k: statistics.median(r[k] for r in runs)
        rows.append((statistics.median(llamas), m(1), m(2), runs[0][3], all(r[4] for r in runs), m(5), m(6)))
        print(f"{kind} {i:2d}  llama.cpp {rows[-1][0]:6.1f}  specdec plain {rows[-1][1]:6.1f}  speculative {rows[-1][2]:6.1f} tok/s"
              f"  ({rows[-1][6]:.2f}x plain [{', '.join(f'{r[6]:.2f}' for r in runs)}], tau {rows[-1][5]:.2f}, {rows[-1][3]} tokens, identical {rows[-1][4]})"
              f"  {p['prompt'][:40]!r}", flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    summary.append(f"{kind} ({len(rows)} prompts): llama.cpp {med(0):.1f} tok/s, specdec plain {med(1):.1f} tok/s "
                   f"({statistics.median(r[1] / r[0] for r in rows):.2f}x llama.cpp), speculative {med(2):.1f} tok/s "
                   f"({statistics.median(r[2] / r[0] for r in rows):.2f}x llama.cpp, {statistics.median(r[6] for r in rows):.2f}x plain, "
                   f"lowest prompt {min(r[6] for r in rows):.2f}x plain), tau {med(5):.2f}; identical {sum(r[4] for r in rows)}/{len(rows)}")

print(f"\nmedians over prompts (each the median of {reps} runs, of more for short answers: {min_seconds:g} s of "
      f"speculative decoding at least, {5 * reps} runs at most), {threads} threads, {n} tokens at most:")
for line in summary:
    print(line)
