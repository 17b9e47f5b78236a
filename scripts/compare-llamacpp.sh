#!/usr/bin/env bash
# llama.cpp side by side: runs llama.cpp's llama-bench and `specdec bench` on the same model for
# each thread count and prints tg128 / pp512 of both and the ratio specdec / llama.cpp, then the
# cost of a batch of N = 1…16 tokens: llama.cpp's ppN (one forward of N tokens from an empty
# context) next to specdec's verify curve (one batch-invariant forward of N tokens at context
# 256), each as ms and as a ratio to its own N = 1.
# Downloads nothing and builds nothing: llama-bench must already be built (CPU, Release).
#
#   LLAMA_BENCH     path of the llama-bench binary (required)
#   SPECDEC_BIN     specdec binary (default: the newest release build under .build*/)
#   SPECDEC_MODEL   model (default: the one scripts/setup.sh fetched)
#   THREADS         thread counts (default: "1 2")
#   REPS            repetitions of each test (default: 5)
#   OUT             folder for the raw JSON of both tools (default: a new temporary folder)
#
# Both report medians of REPS runs after a warm-up; llama.cpp's column is the median of its
# samples_ts (its mean is in the JSON too).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "compare-llamacpp: $*" >&2; exit 1; }
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
[ -n "${LLAMA_BENCH:-}" ] || die "set LLAMA_BENCH to the llama-bench binary"
[ -x "$LLAMA_BENCH" ] || die "$LLAMA_BENCH: not an executable"

if [ -z "${SPECDEC_BIN:-}" ]; then
  SPECDEC_BIN=$(ls -t .build*/release/specdec 2>/dev/null | head -1 || true)
  [ -n "$SPECDEC_BIN" ] || die "no specdec build found: swift build -c release, or set SPECDEC_BIN"
fi
[ -x "$SPECDEC_BIN" ] || die "$SPECDEC_BIN: not an executable"

MODEL="${SPECDEC_MODEL:-${SPECDEC_CACHE:-$HOME/.cache/specdec}/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$MODEL" ] || die "$MODEL: no such model (run scripts/setup.sh or set SPECDEC_MODEL)"
THREADS="${THREADS:-1 2}"
REPS="${REPS:-5}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/compare-llamacpp.XXXXXX")}"
mkdir -p "$OUT"

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
for t in $THREADS; do
  echo "compare-llamacpp: llama-bench -t $t" >&2
  "$LLAMA_BENCH" -m "$MODEL" -t "$t" -p 512 -n 128 -r "$REPS" -o json > "$OUT/llamacpp-t$t.json" \
    2> "$OUT/llamacpp-t$t.log" || die "llama-bench failed (see $OUT/llamacpp-t$t.log)"
  "$LLAMA_BENCH" -m "$MODEL" -t "$t" -p 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -n 0 -r "$REPS" -o json \
    > "$OUT/llamacpp-ppN-t$t.json" 2> "$OUT/llamacpp-ppN-t$t.log" || die "llama-bench ppN failed (see $OUT/llamacpp-ppN-t$t.log)"
  echo "compare-llamacpp: specdec bench -t $t" >&2
  SPECDEC_MODEL="$MODEL" "$SPECDEC_BIN" bench -m "$MODEL" -t "$t" --reps "$REPS" --verify-ctx 256 --json > "$OUT/specdec-t$t.json" \
    2> "$OUT/specdec-t$t.log" || die "specdec bench failed (see $OUT/specdec-t$t.log)"
done

first=$(echo $THREADS | cut -d' ' -f1)
jq -r '.[0] | "llama.cpp: commit \(.build_commit), build \(.build_number), backends \(.backends), CPU \(.cpu_info)"' \
  "$OUT/llamacpp-t$first.json"
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
checkout="$(cd "$(dirname "$SPECDEC_BIN")/../.." && pwd)"
rev=$(git -C "$checkout" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$checkout" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || rev="$rev+uncommitted changes"
echo "specdec:   $SPECDEC_BIN (checkout $checkout at $rev)"
echo "model:     $MODEL"
echo
printf '%-7s  %-5s  %14s  %14s  %8s\n' threads test "llama.cpp t/s" "specdec t/s" ratio
for t in $THREADS; do
  for test in pp512 tg128; do
    if [ "$test" = pp512 ]; then sel='.n_prompt == 512 and .n_gen == 0'; else sel='.n_prompt == 0 and .n_gen == 128'; fi
    l=$(jq -r "[.[] | select($sel)][0].samples_ts | sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end" \
      "$OUT/llamacpp-t$t.json")
    s=$(jq -r ".$test.median_tokens_per_s" "$OUT/specdec-t$t.json")
    awk -v t="$t" -v n="$test" -v l="$l" -v s="$s" 'BEGIN { printf "%-7s  %-5s  %14.1f  %14.1f  %8.2f\n", t, n, l, s, s / l }'
  done
done
echo
for t in $THREADS; do
  echo "batch of N tokens, $t thread(s): llama.cpp ppN (empty context) vs specdec verify (context 256, logits for the last row, as llama-bench)"
  printf '%4s  %14s  %8s  %14s  %8s\n' N "llama.cpp ms" "xN=1" "specdec ms" "xN=1"
  for n in $(seq 1 16); do
    l=$(jq -r "[.[] | select(.n_prompt == $n and .n_gen == 0)][0].avg_ns / 1e6" "$OUT/llamacpp-ppN-t$t.json")
    l1=$(jq -r "[.[] | select(.n_prompt == 1 and .n_gen == 0)][0].avg_ns / 1e6" "$OUT/llamacpp-ppN-t$t.json")
    s=$(jq -r ".verify_cost.points[] | select(.n == $n) | .median_ms" "$OUT/specdec-t$t.json")
    s1=$(jq -r ".verify_cost.points[] | select(.n == 1) | .median_ms" "$OUT/specdec-t$t.json")
    awk -v n="$n" -v l="$l" -v l1="$l1" -v s="$s" -v s1="$s1" 'BEGIN { printf "%4d  %14.2f  %8.2f  %14.2f  %8.2f\n", n, l, l / l1, s, s / s1 }'
  done
  echo
done
for t in $THREADS; do
  jq -r '"specdec t=\(.threads): bandwidth \(.bandwidth_gbs * 100 | round / 100) GB/s, floor \(.floor_tokens_per_s | round) tok/s, tg128 at \(.tg128_percent_of_floor * 10 | round / 10)% of it"' \
    "$OUT/specdec-t$t.json"
done
echo "load average (1/5/15 min) before: $load_before, after: $load_after on $(nproc) cores"
echo "raw JSON: $OUT"
