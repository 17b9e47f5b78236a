#!/usr/bin/env bash
# The test command: installs what the tests need (apt packages, the model), then runs the whole
# suite optimised — numeric code in a debug build is 10–100× slower.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift test -c release "$@"
