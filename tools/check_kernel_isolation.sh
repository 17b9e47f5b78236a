#!/bin/bash
# Checks that only the KernelsAVX2 module's code uses AVX instructions, so that the program still
# runs on x86-64 CPUs without AVX2 (where Kernels dispatches to the portable kernels), and, when
# qemu-user is installed, runs a short decode on an emulated CPU without AVX.
#
# usage: tools/check_kernel_isolation.sh [path/to/specdec]   (default: .build/release/specdec)
set -euo pipefail
bin=${1:-.build/release/specdec}
[ -x "$bin" ] || { echo "no executable at $bin (swift build -c release first)"; exit 2; }

# 1. Every function containing a VEX-encoded instruction (AVX/AVX2/FMA/F16C/BMI) must belong to
#    KernelsAVX2 (Swift symbols of that module start with $s11KernelsAVX2).
bad=$(llvm-objdump -d --no-show-raw-insn "$bin" | awk '
    /^[0-9a-f]+ <.*>:$/ { f = $2; next }
    /^ +[0-9a-f]+:\s+v[a-z0-9]+[ \t]/ || /%ymm/ { if (!(f in seen)) { seen[f] = 1; print f } }
' | grep -v '^<\$s11KernelsAVX2' || true)
if [ -n "$bad" ]; then
    echo "AVX instructions outside KernelsAVX2:"; echo "$bad" | swift demangle --simplified; exit 1
fi
echo "ok: AVX instructions only in KernelsAVX2"

# 2. A short decode on an emulated Nehalem (SSE4.2, no AVX): any AVX instruction would be SIGILL.
if command -v qemu-x86_64 > /dev/null; then
    out=$(OPENBLAS_CORETYPE=Nehalem SPECDEC_KERNELS=avx2 qemu-x86_64 -cpu Nehalem "$bin" decode --raw \
          -p "Hello world" -n 4 -t 2 2>&1) || { echo "decode failed on an emulated CPU without AVX:"; echo "$out"; exit 1; }
    echo "$out" | grep -q "lacks AVX2" || { echo "expected the AVX2 request to fall back:"; echo "$out"; exit 1; }
    echo "ok: decodes on an emulated CPU without AVX (portable kernels)"
else
    echo "skipped: qemu-x86_64 not installed (apt-get install qemu-user) for the emulated-CPU run"
fi
