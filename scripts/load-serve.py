#!/usr/bin/env python3
"""Load test for `specdec serve` (and, for comparison, llama.cpp's llama-server) on loopback.

Starts each server configuration itself on a free port, sends --requests streamed chat requests
from --concurrency client threads (greedy, --max-tokens each), and reports per configuration:
requests/s, generated tokens/s, latency p50/p99, time to first token p50/p99, errors (must be 0)
and the server's RSS after a warm-up request and after the load. Configurations run one after
the other in the same invocation, so their numbers are side by side on the same machine state.

    scripts/load-serve.py                       # specdec plain and with the ViSpec draft, text+image mix
    scripts/load-serve.py --llama-server BIN    # adds llama-server on the text prompts (and specdec on the same)

Standard library only. Bounded in count (--requests) and time (--time-limit per configuration).
"""
import argparse, base64, http.client, json, os, pathlib, re, signal, socket, statistics, subprocess, sys, threading, time

ROOT = pathlib.Path(__file__).resolve().parent.parent

TEXT_PROMPTS = [
    "Write one sentence about the sea.", "Give me three tips for learning to cook.", "What is photosynthesis?",
    "Explain what a prime number is.", "Describe a sunset in two sentences.", "List four kinds of fruit.",
    "Why do cats purr?", "Write a haiku about winter.", "What does a compiler do?", "How do I boil an egg?",
    "Name the planets of the solar system.", "What is the capital of Italy and why is it famous?",
    "Summarise the water cycle.", "Give a short definition of gravity.", "Suggest a name for a pet turtle.",
    "What are the benefits of walking every day?",
]
IMAGE_QUESTIONS = ["What colours are in this picture?", "Describe this image.", "What colour is the shape?",
                   "What do you see in this picture?"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    def __init__(self, name, argv, port, ready_path="/health"):
        self.name, self.port = name, port
        self.log = open(f"/tmp/load-serve-{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{name}: the server exited ({self.proc.returncode}); see /tmp/load-serve-{name}.log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", ready_path)
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        sys.exit(f"{name}: not ready after 300 s")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def one_request(port, body, timeout):
    """Streams one chat completion; returns (ok, ttft, latency, tokens, error)."""
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            return False, None, None, 0, f"HTTP {r.status}: {r.read()[:200]!r}"
        ttft, tokens, chunks, done = None, None, 0, False
        buf = b""
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            obj = json.loads(data)
            for ch in obj.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
            if obj.get("usage"):
                tokens = obj["usage"].get("completion_tokens")
        if not done:
            return False, None, None, 0, "stream ended without [DONE]"
        return True, ttft, time.perf_counter() - t0, tokens if tokens is not None else chunks, None
    except Exception as e:  # noqa: BLE001 - any failure is an error of the run
        return False, None, None, 0, repr(e)


def run_load(server, workload, args):
    results, lock, next_i = [], threading.Lock(), [0]
    deadline = time.time() + args.time_limit

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= len(workload) or time.time() > deadline:
                    return
                next_i[0] += 1
            r = one_request(server.port, workload[i], args.time_limit)
            with lock:
                results.append(r)

    # Warm-up (first request pays one-time costs), then RSS before the load.
    one_request(server.port, workload[0], args.time_limit)
    rss_before = rss_mb(server.proc.pid)
    peak = [rss_before]
    stop_sampling = threading.Event()

    def sampler():
        while not stop_sampling.wait(0.5):
            peak[0] = max(peak[0], rss_mb(server.proc.pid))

    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop_sampling.set()
    rss_after = rss_mb(server.proc.pid)

    ok = [r for r in results if r[0]]
    errors = [r[4] for r in results if not r[0]]
    lat = sorted(r[2] for r in ok)
    ttft = sorted(r[1] for r in ok if r[1] is not None)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
    toks = sum(r[3] for r in ok)
    return {
        "server": server.name, "requests": len(results), "errors": len(errors), "error_examples": errors[:3],
        "wall_s": wall, "requests_per_s": len(ok) / wall, "tokens_per_s": toks / wall, "tokens": toks,
        "latency_p50_s": q(lat, 0.5), "latency_p99_s": q(lat, 0.99), "ttft_p50_s": q(ttft, 0.5), "ttft_p99_s": q(ttft, 0.99),
        "rss_mb_before": rss_before, "rss_mb_after": rss_after, "rss_mb_peak": peak[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specdec", default=str(ROOT / ".build/release/specdec"))
    ap.add_argument("--model", default=os.environ.get("SPECDEC_MODEL") or os.path.expanduser("~/.cache/specdec/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--mmproj", default=str(ROOT / "checkpoints/demo-tower.gguf"))
    ap.add_argument("--draft", default=str(ROOT / "checkpoints/vispec-draft.safetensors"))
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary: adds it on the text-only workload")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=8, help="server slots (specdec --parallel, llama-server -np)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--image-share", type=float, default=0.3, help="fraction of image requests in the specdec workload")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--time-limit", type=float, default=900, help="seconds per configuration")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the load on the same server; RSS is reported after each round")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    images = sorted((ROOT / "checkpoints/images").glob("*.png"))
    def text_req(i):
        return {"messages": [{"role": "user", "content": TEXT_PROMPTS[i % len(TEXT_PROMPTS)]}], "temperature": 0,
                "max_tokens": args.max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    def image_req(i):
        url = "data:image/png;base64," + base64.b64encode(images[i % len(images)].read_bytes()).decode()
        return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                           {"type": "text", "text": IMAGE_QUESTIONS[i % len(IMAGE_QUESTIONS)]}]}],
                "temperature": 0, "max_tokens": args.max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    every = round(1 / args.image_share) if args.image_share > 0 else 0
    mixed = [image_req(i) if every and i % every == every - 1 else text_req(i) for i in range(args.requests)]
    text_only = [text_req(i) for i in range(args.requests)]

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    print(f"# {cpu}, {os.cpu_count()} CPUs; {args.requests} requests, {args.concurrency} clients, {args.parallel} slots, "
          f"{args.max_tokens} tokens each, greedy, {args.threads} threads", flush=True)

    base = [args.specdec, "serve", "-m", args.model, "-t", str(args.threads), "--parallel", str(args.parallel), "--queue", "256"]
    configs = []
    if args.llama_server:
        configs += [("llama-server (text)", "text", [args.llama_server, "-m", args.model, "-t", str(args.threads), "-np", str(args.parallel),
                                                     "-c", str(4096 * args.parallel), "--host", "127.0.0.1", "--port", "{port}"]),
                    ("specdec plain (text)", "text", base + ["--port", "{port}"])]
    configs += [("specdec plain (mixed)", "mixed", base + ["--mmproj", args.mmproj, "--port", "{port}"]),
                ("specdec + draft (mixed)", "mixed", base + ["--mmproj", args.mmproj, "--draft", args.draft, "--port", "{port}"])]

    rows = []
    for name, workload, argv in configs:
        port = free_port()
        server = Server(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), [a.replace("{port}", str(port)) for a in argv], port)
        try:
            rounds = [run_load(server, text_only if workload == "text" else mixed, args) for _ in range(args.rounds)]
        finally:
            code = server.stop()
        row = dict(rounds[-1])
        row["rss_mb_after_each_round"] = [r["rss_mb_after"] for r in rounds]
        if args.rounds > 1:  # totals over all rounds; latencies from the last
            row["requests"] = sum(r["requests"] for r in rounds)
            row["errors"] = sum(r["errors"] for r in rounds)
            row["error_examples"] = sum((r["error_examples"] for r in rounds), [])
            row["rss_mb_before"] = rounds[0]["rss_mb_before"]
            row["rss_mb_peak"] = max(r["rss_mb_peak"] for r in rounds)
        row["config"] = name
        row["exit_code"] = code
        rows.append(row)
        print(f"{name:26s} {row['requests']:4d} req {row['errors']:2d} err | {row['requests_per_s']:5.2f} req/s "
              f"{row['tokens_per_s']:6.1f} tok/s | latency p50 {row['latency_p50_s']:.2f} s p99 {row['latency_p99_s']:.2f} s | "
              f"TTFT p50 {row['ttft_p50_s']:.2f} s p99 {row['ttft_p99_s']:.2f} s | RSS {row['rss_mb_before']:.0f} -> "
              f"{' -> '.join(f'{x:.0f}' for x in row['rss_mb_after_each_round'])} MB (peak {row['rss_mb_peak']:.0f}) | exit {code}", flush=True)
        for e in row["error_examples"]:
            print(f"    error: {e}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"cpu": cpu, "args": vars(args), "rows": rows}, indent=2))
    sys.exit(1 if any(r["errors"] for r in rows) else 0)


if __name__ == "__main__":
    main()
