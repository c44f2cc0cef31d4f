#!/usr/bin/env bash
# Runs the property tests (tests/fuzz.rs) with fresh random cases until the
# time is up: bash scripts/fuzz.sh [seconds, default 60]. A failure stops
# it; proptest saves the input in proptest-regressions/ (commit that file:
# it is replayed first on every `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
end=$((SECONDS + seconds))
rounds=0
while [ $SECONDS -lt $end ]; do
  PROPTEST_CASES=${PROPTEST_CASES:-20000} cargo test -q --test fuzz >/dev/null
  rounds=$((rounds + 1))
done
echo "fuzz: $rounds rounds of ${PROPTEST_CASES:-20000} cases per property in ${seconds}s, no failure"
