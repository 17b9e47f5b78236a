#!/usr/bin/env python3
"""Outside check of an EAGLE-3 draft exported with `specdec export-draft --format llama.cpp`.

For every prompt, side by side in one run and on the same machine:
  llama.cpp plain        llama-completion, greedy
  llama.cpp + draft      llama-speculative-simple --spec-type draft-eagle3 (a chain of NMAX tokens)
  specdec plain / draft  specdec decode --draft DRAFT.gguf --compare (the same chain shape, and the
                         default tree when --tree is given)
and prints a Markdown table: tokens/s, speedup over the engine's own plain decoding, mean accepted
draft tokens per step, whether each engine's speculative text equals its plain text (greedy
output must be identical), and each engine's ceiling: the speedup a draft accepted at every
position would give at the step cost measured here (NMAX + 1 tokens per step; a step costs about
the same whatever is accepted, so below 1× no draft can speed that engine up at this chain length). Builds and downloads nothing: LLAMA_BIN must point at llama.cpp's
build/bin (built outside this repository).

usage: LLAMA_BIN=.../build/bin scripts/compare-eagle3-llamacpp.py DRAFT.gguf [--prompts FILE] [--limit 8]
       [-n 128] [--threads 1] [--nmax 4] [--runs 3] [--json OUT]
Prompts: the held-out text prompts of checkpoints/eval/prompts.jsonl (or a .jsonl / one-per-line
file), with synth-data's long-answer instruction appended unless --no-long-answer.
"""
import argparse, json, os, re, statistics, subprocess, sys

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
LONG_ANSWER = " Please answer with at least 1000 words."   # synth-data's default instruction


def chatml(q):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def run(cmd):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


def text_only(s):
    """The echoed prompt and answer without special-token markers or llama.cpp's end tag."""
    s = s.replace("[end of text]", "")
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        s = s.replace(t, "")
    return s.strip()


def same_text(a, b):
    # speculative-simple may run a few tokens past -n; the shorter text must be a prefix.
    a, b = text_only(a), text_only(b)
    return a.startswith(b) or b.startswith(a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("draft")
    ap.add_argument("--prompts", default="checkpoints/eval/prompts.jsonl",
                    help="the evaluation set's .jsonl (text prompts are used) or a text file, one question per line")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--no-long-answer", action="store_true")
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nmax", type=int, default=4, help="draft chain length (llama.cpp --spec-draft-n-max)")
    ap.add_argument("--runs", type=int, default=1, help="repetitions per prompt (medians)")
    ap.add_argument("--json")
    a = ap.parse_args()
    lb = os.environ.get("LLAMA_BIN") or sys.exit("set LLAMA_BIN to llama.cpp's build/bin")
    model = os.environ.get("SPECDEC_MODEL") or os.path.expanduser("~/.cache/specdec/SmolLM2-135M-Instruct.Q4_1.gguf")
    specdec = os.environ.get("SPECDEC", ".build/release/specdec")
    if a.prompts.endswith(".jsonl"):
        prompts = [o["prompt"] for o in map(json.loads, open(a.prompts)) if o.get("kind", "text") == "text"]
    else:
        prompts = [l.strip() for l in open(a.prompts) if l.strip()]
    prompts = [q + ("" if a.no_long_answer else LONG_ANSWER) for q in prompts[:a.limit]]
    t = str(a.threads)
    rows = []
    for q in prompts:
        p = chatml(q)
        r = {"prompt": q, "lc_plain": [], "lc_spec": [], "sd_plain": [], "sd_spec": []}
        for _ in range(a.runs):
            out, err = run([f"{lb}/llama-completion", "-m", model, "-p", p, "-n", str(a.n), "--temp", "0", "-t", t,
                            "-c", "2048", "-no-cnv", "--no-warmup"])
            m = re.search(r"\beval time =.*?/\s*(\d+) runs.*?([\d.]+) tokens per second", err)
            r["lc_plain"].append(float(m.group(2)))
            plain_text = out
            out, err = run([f"{lb}/llama-speculative-simple", "-m", model, "-md", a.draft, "--spec-type", "draft-eagle3",
                            "--spec-draft-n-max", str(a.nmax), "-p", p, "-n", str(a.n), "--temp", "0", "-t", t, "-td", t,
                            "-c", "2048", "-lv", "4"])
            m = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s*([\d.]+) t/s", err)
            r["lc_spec"].append(float(m.group(3)))
            drafts = int(re.search(r"#gen drafts =\s*(\d+)", err).group(1))
            r.setdefault("lc_ceiling", []).append((a.nmax + 1) * drafts / float(m.group(2)))
            acc = int(re.search(r"#acc tokens =\s*(\d+)", err).group(1))
            r["lc_tau"] = acc / max(drafts, 1)
            r["lc_accept_rate"] = float(re.search(r"accept\s+=\s+([\d.]+)%", err).group(1)) / 100
            r["lc_identical"] = same_text(out, plain_text)
            out, _ = run([specdec, "decode", "-m", model, "--draft", a.draft, "--raw", "-p", p, "-n", str(a.n), "-t", t,
                          "--tree-top-k", "1", "--tree-depth", str(a.nmax), "--tree-tokens", str(a.nmax), "--compare", "--json"])
            o = json.loads(out)
            s = o["stats"]
            r.setdefault("sd_ceiling", []).append((a.nmax + 1) * s["steps"] * s["tokens_per_s"] / len(o["tokens"]))
            r["sd_plain"].append(s["plain_tokens_per_s"])
            r["sd_spec"].append(s["tokens_per_s"])
            r["sd_tau"] = s["tau"]
            r["sd_identical"] = s["identical"]
        rows.append(r)

    med = statistics.median
    print(f"draft {a.draft}, -n {a.n}, {a.threads} thread(s), chain of {a.nmax}, medians of {a.runs} run(s) per prompt\n")
    print("| prompt | llama.cpp plain tok/s | llama.cpp EAGLE-3 tok/s | speedup | τ | identical | ceiling | "
          "specdec plain tok/s | specdec EAGLE-3 tok/s | speedup | τ | identical | ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lp, ls, sp, ss = med(r["lc_plain"]), med(r["lc_spec"]), med(r["sd_plain"]), med(r["sd_spec"])
        r.update(lc_speedup=ls / lp, sd_speedup=ss / sp,
                 lc_ceiling_speedup=med(r["lc_ceiling"]) / lp, sd_ceiling_speedup=med(r["sd_ceiling"]) / sp)
        print(f"| {r['prompt'][:40]} | {lp:.1f} | {ls:.1f} | {ls / lp:.2f}× | {r['lc_tau']:.2f} | {r['lc_identical']} | "
              f"{r['lc_ceiling_speedup']:.2f}× | {sp:.1f} | {ss:.1f} | {ss / sp:.2f}× | {r['sd_tau']:.2f} | "
              f"{r['sd_identical']} | {r['sd_ceiling_speedup']:.2f}× |")
    print(f"| **median** | | | **{med(r['lc_speedup'] for r in rows):.2f}×** | {med(r['lc_tau'] for r in rows):.2f} | "
          f"{all(r['lc_identical'] for r in rows)} | {med(r['lc_ceiling_speedup'] for r in rows):.2f}× | | | "
          f"**{med(r['sd_speedup'] for r in rows):.2f}×** | {med(r['sd_tau'] for r in rows):.2f} | "
          f"{all(r['sd_identical'] for r in rows)} | {med(r['sd_ceiling_speedup'] for r in rows):.2f}× |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"draft": a.draft, "n": a.n, "threads": a.threads, "nmax": a.nmax, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
