#!/usr/bin/env bash
# ARM without a board: run a target bundle's runtime under qemu-user aarch64 emulation.
#
#   scripts/arm_check.sh [--target rpi4] [--seconds 2] [--work DIR] [--models DIR] [--source DIR]
#
# 1. builds the target's bundle with its aarch64 wheels (`edgemix board bundle --with-wheels`)
#    and verifies it with the bundle's own installer (install.sh --verify-only);
# 2. makes a Debian bookworm arm64 root with Python 3.11 (debootstrap --foreign; the .debs
#    are unpacked on the host, so no binfmt_misc registration is needed);
# 3. installs the bundle's wheels for aarch64 into a site folder (host pip, --platform),
#    plus onnxruntime==1.19.2 for the ONNX parity row (newer releases crash at import
#    under qemu-user 7.2; the Pi bundles do not need onnxruntime at all), with
#    ai-edge-litert pinned to 2.1.6 for the emulator (2.2.0 and newer segfault creating an
#    Interpreter under qemu-user 7.2; the bundle itself keeps pyproject's range);
# 4. renders a short session with the Console, the features and every model backend,
#    natively (x86-64) and under qemu-aarch64-static (-cpu cortex-a72 for rpi4, cortex-a76
#    for rpi5) from the bundle's wheels, and compares:
#    the mix, the features and each backend's outputs across the two architectures, and
#    each backend against the numpy reference on ARM.
#
# Too slow for the test suite (Numba compiles every kernel under emulation: many minutes the
# first time; the cache in WORK/numba-cache makes later runs quick), so it is one command.
# Needs Debian's qemu-user-static and debootstrap (installed here when run as root) and the
# network to Debian's archive and PyPI.  Exit status 0 when every comparison passes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target=rpi4
seconds=2
work=${EDGEMIX_ARM_WORK:-/tmp/edgemix-arm}
models=$repo/models
source=$repo
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --work) work=$2; shift ;;
    --models) models=$2; shift ;;
    --source) source=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "arm_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
py=$repo/.venv/bin/python
say() { echo "arm_check: $*" >&2; }
export NUMBA_CACHE_DIR_HOST=${NUMBA_CACHE_DIR:-$repo/.numba_cache}

# ---- tools ---------------------------------------------------------------------------------
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing ${need[*]}: sudo apt-get install ${need[*]}"; exit 2
  fi
fi
mkdir -p "$work"
start=$(date +%s)
# One snapshot of the models for the whole run: the bundle and both renders read the same
# files even if models/ is rebuilt meanwhile.
rm -rf "$work/models"
cp -R "$models" "$work/models"
models=$work/models
# Emulate the target's own core, so NEON kernels are picked as on the board (Pi 4: A72,
# no dot product or fp16 arithmetic; Pi 5: A76).
case "$target" in
  rpi4) cpu=cortex-a72 ;;
  rpi5) cpu=cortex-a76 ;;
  *) cpu=max ;;
esac

# ---- 1. the bundle, with aarch64 wheels, verified by its installer ----------------------------
say "building the $target bundle with its aarch64 wheels"
rm -rf "$work/dist" "$work/bundle"
"$py" -c "import sys; from edgemix.boardtools.bundle import build_bundle
print(build_bundle(sys.argv[1], sys.argv[2], models_dir=sys.argv[3], source=sys.argv[4],
                   with_wheels=True))" \
  "$target" "$work/dist" "$models" "$source" > "$work/tarball.txt"
tarball=$(cat "$work/tarball.txt")
mkdir -p "$work/bundle"
tar xzf "$tarball" -C "$work/bundle"
bundle=$(echo "$work"/bundle/edgemix-*)
bash "$bundle/install.sh" --verify-only
arch=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['arch'])" "$bundle/bundle.json")
[ "$arch" = aarch64 ] || { say "target $target is $arch, not aarch64: nothing to emulate"; exit 2; }

# ---- 2. a Debian arm64 root with Python 3.11 -------------------------------------------------
root=$work/root
if [ ! -x "$root/usr/bin/python3.11" ]; then
  say "debootstrap: Debian bookworm arm64 with python3.11 into $root"
  rm -rf "$root"
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3.11-minimal,libpython3.11-stdlib,libsndfile1 bookworm "$root" "$mirror" \
    > "$work/debootstrap.log" 2>&1
  # --foreign leaves the second stage to the target; unpacking the .debs is all a Python
  # run under qemu-user needs (no maintainer scripts, no binfmt_misc).
  for deb in "$root"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
fi
qemu=(qemu-aarch64-static -cpu "$cpu" -L "$root")
"${qemu[@]}" "$root/usr/bin/python3.11" -c 'import platform, sys; assert platform.machine() == "aarch64"; print("arm_check: emulated", platform.machine(), sys.version.split()[0], file=sys.stderr)'

# ---- 3. the bundle's wheels for aarch64 ------------------------------------------------------
site=$work/site
rm -rf "$site"
plat=()
for t in $("$py" -c "from edgemix.boardtools.bundle import platform_tags; print(' '.join(platform_tags('aarch64')))"); do
  plat+=(--platform "$t")
done
pipx=("$py" -m pip --disable-pip-version-check -q)
# Pins for the emulator only (the bundle keeps its own ranges): qemu-user 7.2 segfaults in
# ai-edge-litert >= 2.2.0 (Interpreter creation, with or without delegates; 2.1.6 runs)
# and at import in onnxruntime newer than 1.19.2.
emu_pins=("ai-edge-litert==2.1.6" "onnxruntime==1.19.2")
"${pipx[@]}" download -d "$work/extra-wheels" --only-binary=:all: --implementation cp \
  --python-version 3.11 "${plat[@]}" "${emu_pins[@]}"
"${pipx[@]}" install --target "$site" --no-index --find-links "$bundle/wheels" \
  --find-links "$work/extra-wheels" --only-binary=:all: --implementation cp --python-version 3.11 \
  "${plat[@]}" -r "$bundle/requirements.txt" "$bundle"/wheels/edgemix-*.whl "${emu_pins[@]}"
say "site: $(ls "$site" | grep -c dist-info) distributions for aarch64 in $site"

# ---- 4. render natively and under emulation, compare -----------------------------------------
say "rendering $seconds s natively ($(uname -m))"
(cd "$work" && NUMBA_CACHE_DIR=$NUMBA_CACHE_DIR_HOST PYTHONPATH=$repo "$py" -m edgemix board armcheck \
  render --profile "$target" --models "$models" --seconds "$seconds" -o "$work/host.npz")
say "rendering $seconds s under qemu-aarch64 -cpu $cpu from the bundle's wheels (slow the first time)"
mkdir -p "$work/numba-cache"
(cd "$work" && "${qemu[@]}" -E PYTHONPATH="$site" -E NUMBA_CACHE_DIR="$work/numba-cache" \
  -E PYTHONDONTWRITEBYTECODE=1 "$root/usr/bin/python3.11" -m edgemix board armcheck \
  render --profile "$target" --models "$models" --seconds "$seconds" -o "$work/arm.npz")
set +e
(cd "$work" && "$py" -m edgemix board armcheck compare "$work/host.npz" "$work/arm.npz" \
  --json "$work/report.json")
rc=$?
set -e
say "done in $(( $(date +%s) - start )) s; report: $work/report.json"
exit $rc
