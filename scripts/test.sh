#!/usr/bin/env bash
# Run the whole test suite.  Numba's on-disk cache lives in .numba_cache so compile time is
# paid once per clone.  pytest's exit code 5 ("no tests collected") is a failure here: a
# suite that ran nothing has proved nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
.venv/bin/python -m pytest tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
