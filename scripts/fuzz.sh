#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each (default
# 30s), one after another, and stops at the first failure. go test runs
# one fuzz target per invocation, so each is started on its own.
#   scripts/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-30s}
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort)
n=0
for file in $targets; do
  pkg=./$(dirname "${file#./}")
  for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
    echo "fuzz: $pkg $name for $dur"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$dur" "$pkg"
    n=$((n + 1))
  done
done
echo "fuzz: $n targets passed"
