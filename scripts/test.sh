#!/usr/bin/env bash
# The test command: installs what the tests need (apt packages, the model), then runs the whole
# suite optimised — numeric code in a debug build is 10–100× slower.
#   scripts/test.sh --fast   the model-free tier only (kernels, GGUF, sampling, shard format and
#                            prompt sources): no setup, no model, seconds once built.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fast" ]]; then
    shift
    exec swift test -c release --filter 'KernelsTests|GGUFTests|SamplingTests|SourceTests|ChecksumTests|RecordTests|ShardSpecTests|CorruptionTests|TinyTargetTests' "$@"
fi
scripts/setup.sh
swift test -c release "$@"
