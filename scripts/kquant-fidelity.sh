#!/usr/bin/env bash
# K-quant GGUFs end to end: requantize the reference model's Q4_1 GGUF with llama.cpp's
# llama-quantize (its rows are 576 wide, so only ffn_down, 1536 wide, can take Q4_K/Q5_K; the
# Q6_K file keeps Q8_0 elsewhere), compute each file's float64 reference, and score specdec (both
# precisions) and llama.cpp by the reference's margin rule (scripts/fidelity.py).
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin scripts/kquant-fidelity.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMA_BIN:?set LLAMA_BIN to the build/bin folder of llama.cpp (llama-quantize, llama-completion)}
work=${1:-$(mktemp -d)}
model=${SPECDEC_MODEL:-${SPECDEC_CACHE:-$HOME/.cache/specdec}/SmolLM2-135M-Instruct.Q4_1.gguf}
gguf_py=$(cd "$bin/../.." && pwd)/gguf-py
mkdir -p "$work"
declare -A flags=([q4_k]="--tensor-type ffn_down=q4_k" [q5_k]="--tensor-type ffn_down=q5_k" [q6_k]="")
declare -A ftype=([q4_k]=Q4_1 [q5_k]=Q4_1 [q6_k]=Q6_K)
for name in q4_k q5_k q6_k; do
    out="$work/smollm2-$name.gguf"
    if [ ! -f "$out" ]; then
        "$bin/llama-quantize" --allow-requantize ${flags[$name]} "$model" "$out.tmp" ${ftype[$name]} 1 >"$work/quantize-$name.log" 2>&1 ||
            { tail -5 "$work/quantize-$name.log" >&2; echo "kquant-fidelity: llama-quantize failed ($work/quantize-$name.log)" >&2; exit 1; }
        mv "$out.tmp" "$out"
    fi
    [ -f "$work/golden-$name.json" ] || python3 "$root/scripts/kquant-reference.py" "$out" --gguf-py "$gguf_py" --out "$work/golden-$name.json"
    echo "== $name ($(basename "$out"))"
    python3 "$root/scripts/fidelity.py" --golden "$work/golden-$name.json" --model "$out" --llama-completion "$bin/llama-completion"
done
