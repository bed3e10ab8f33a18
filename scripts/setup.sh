#!/usr/bin/env bash
# Set up a fresh Debian machine for edgemix: system packages, then a venv in .venv.
#   scripts/setup.sh runtime   what `edgemix demo` needs
#   scripts/setup.sh test      everything the test suite needs (audio servers, runtimes, oracles)
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"

apt_lists=(scripts/apt-runtime.txt)
extras="live,infer,profile"
if [ "$kind" = test ]; then
  apt_lists+=(scripts/apt-test.txt)
  extras="live,infer,profile,export,test,oracle"
fi

# System packages: only the missing ones, and only when we can install them.
want=$(cat "${apt_lists[@]}" | sed 's/#.*//' | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages (run as root, or: sudo apt-get install ${missing[*]})" >&2
  fi
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.edgemix-$kind-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "setup: installing edgemix[$extras] into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
