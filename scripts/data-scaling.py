#!/usr/bin/env python3
"""The data-scaling curve: what more synthesized data buys a draft.

For each size N, the first N complete records of one synth-data folder (`data snapshot
--records N`, so every size is a subset of the next) train a draft with the same command
(`train-adapter`, same init, epochs, seed); `eval` then measures it on the held-out evaluation
set (`checkpoints/eval`: prompts never used for training) side by side with plain decoding.
Writes scaling.json, scaling.md (a table) and scaling.svg (held-out τ against N) to --out.

  scripts/data-scaling.py --data /work/data/img-s41 --sizes 1000,2000,5000 --out /work/scaling \\
      -- --mmproj checkpoints/demo-tower.gguf --stage 2 --init checkpoints/vispec-draft.safetensors --num-q 2 --epochs 1 --seed 3 -t 2

Everything after `--` goes to train-adapter unchanged. Sizes already trained (their draft exists
in --out) are not trained again, nor evaluated again with the same --eval-args, so a killed run
continues where it stopped and a rerun with more sizes only measures the new ones.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, capture=True):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    # Uncaptured output (training progress) goes to stderr: stdout is the table alone.
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else sys.stderr, text=True)
    if r.returncode != 0:
        sys.exit(f"data-scaling: {cmd[1]} {cmd[2] if len(cmd) > 2 else ''} failed (exit {r.returncode})")
    return r.stdout


def svg(points, out, ylabel):
    """A small line plot of (N, value) with a log-scaled x axis."""
    w, h, m = 480, 300, 50
    xs = [math.log10(n) for n, _ in points]
    ys = [v for _, v in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = 0.0, max(max(ys) * 1.15, 0.1)
    px = lambda x: m + (x - x0) / (x1 - x0) * (w - 2 * m)
    py = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
         f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
         f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">training samples (log scale)</text>',
         f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">{ylabel}</text>']
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        s.append(f'<text x="{m - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    s.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for (n, v), x in zip(points, xs):
        s.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="#1f77b4"/>')
        s.append(f'<text x="{px(x):.1f}" y="{h - m + 14}" text-anchor="middle">{n}</text>')
        s.append(f'<text x="{px(x):.1f}" y="{py(v) - 8:.1f}" text-anchor="middle">{v:.2f}</text>')
    s.append("</svg>")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(s) + "\n")
    os.replace(tmp, out)


def main():
    argv = sys.argv[1:]
    train_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, train_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to train-adapter (stage, init, epochs, seed, threads...).")
    p.add_argument("--data", required=True, help="a synth-data folder (finished or still being written)")
    p.add_argument("--sizes", required=True, help="comma-separated record counts, e.g. 1000,2000,5000")
    p.add_argument("--out", required=True, help="work folder: snapshots, drafts, scaling.json/.md/.svg")
    p.add_argument("--specdec", default=os.path.join(ROOT, ".build/release/specdec"), help="the specdec binary")
    p.add_argument("--eval-set", default=os.path.join(ROOT, "checkpoints/eval"), help="held-out prompts (eval --set)")
    p.add_argument("--eval-args", default="--limit 14 -n 48 --temp 0 --tree-tokens 4 --tree-top-k 1 --tree-depth 4",
                   help="eval options (default: 14 prompts of each kind, 48 tokens, T=0, a chain of 4)")
    p.add_argument("--kind", default="image", choices=["image", "text"], help="which prompts' τ the curve shows")
    a = p.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in a.sizes.split(",")})
    except ValueError:
        sys.exit(f"data-scaling: --sizes {a.sizes}: expected comma-separated integers")
    if not sizes or sizes[0] < 1:
        sys.exit("data-scaling: --sizes must be positive")
    if not os.path.exists(a.specdec):
        sys.exit(f"data-scaling: {a.specdec}: no such binary (swift build -c release)")
    os.makedirs(a.out, exist_ok=True)
    mmproj = train_args[train_args.index("--mmproj") + 1] if "--mmproj" in train_args else None

    rows = []
    for n in sizes:
        snap = os.path.join(a.out, f"data-{n}")
        draft = os.path.join(a.out, f"draft-{n}.safetensors")
        report_path = os.path.join(a.out, f"draft-{n}.report.json")
        if not (os.path.exists(draft) and os.path.exists(report_path)):
            run([a.specdec, "data", "snapshot", a.data, "--records", str(n), "--out", snap])
            run([a.specdec, "train-adapter", "--data", snap, "--out", draft] + train_args, capture=False)
        with open(report_path) as f:
            report = json.load(f)
        # The eval of a trained size is kept too (eval-N.json, for these --eval-args), so a rerun
        # with more sizes only measures the new ones.
        eval_path = os.path.join(a.out, f"eval-{n}.json")
        out = None
        if os.path.exists(eval_path) and os.path.getmtime(eval_path) >= os.path.getmtime(draft):
            with open(eval_path) as f:
                cached = json.load(f)
            out = cached["eval"] if cached.get("eval_args") == a.eval_args else None
        if out is None:
            ev = [a.specdec, "eval", "--set", a.eval_set, "--draft", draft, "--json"] + a.eval_args.split()
            if mmproj:
                ev += ["--mmproj", mmproj]
            out = json.loads(run(ev))
            with open(eval_path + ".tmp", "w") as f:
                json.dump({"eval_args": a.eval_args, "eval": out}, f)
            os.replace(eval_path + ".tmp", eval_path)
        cells = {(c["system"], c["kind"]): c for c in out["cells"] if c["temperature"] == 0}
        name = os.path.basename(draft)
        row = {"records": n, "validation_tau": report["validation"]["tau"],
               "validation_top1": report["validation"]["top1_agreement"],
               "train_seconds": report["seconds"], "steps": report["steps"]}
        for kind in ("image", "text"):
            c = cells.get((name, kind))
            if c:
                row[f"{kind}_tau"] = c["tau"]
                row[f"{kind}_speedup"] = c["speedup"]
                row[f"{kind}_identical"] = c["identical"] == c["prompts"]
        rows.append(row)
        print(f"data-scaling: {n} records: held-out {a.kind} τ {row.get(a.kind + '_tau', float('nan')):.2f}, "
              f"validation τ {row['validation_tau']:.2f}", file=sys.stderr, flush=True)

    result = {"data": a.data, "train_args": train_args, "eval_args": a.eval_args, "rows": rows}
    with open(os.path.join(a.out, "scaling.json.tmp"), "w") as f:
        json.dump(result, f, indent=2)
    os.replace(os.path.join(a.out, "scaling.json.tmp"), os.path.join(a.out, "scaling.json"))
    md = ["| training records | held-out τ image | speedup image | held-out τ text | speedup text | validation τ | validation top-1 | steps |",
          "|---|---|---|---|---|---|---|---|"]
    f2 = lambda r, k, fmt: (fmt % r[k]) if k in r else "–"
    for r in rows:
        md.append(f"| {r['records']} | {f2(r, 'image_tau', '%.2f')} | {f2(r, 'image_speedup', '%.2f×')} | "
                  f"{f2(r, 'text_tau', '%.2f')} | {f2(r, 'text_speedup', '%.2f×')} | {r['validation_tau']:.2f} | "
                  f"{r['validation_top1']:.3f} | {r['steps']} |")
    with open(os.path.join(a.out, "scaling.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    svg([(r["records"], r.get(f"{a.kind}_tau", 0.0)) for r in rows], os.path.join(a.out, "scaling.svg"),
        f"held-out {a.kind} τ (accepted draft tokens per step)")
    print("\n".join(md))
    if any(r.get(f"{k}_identical") is False for r in rows for k in ("image", "text")):
        sys.exit("data-scaling: a speculative output differed from plain decoding at T=0")


if __name__ == "__main__":
    main()
