#!/usr/bin/env bash
# Run the benchmarks and print their tables (pytest-benchmark).  Pass --benchmark-json=F to keep them.
set -uo pipefail
cd "$(dirname "$0")/.."
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
.venv/bin/python -m pytest benchmarks -o python_files="bench_*.py" "$@"
rc=$?
[ "$rc" -eq 5 ] && { echo "bench: no benchmarks collected" >&2; exit 1; }
exit "$rc"
