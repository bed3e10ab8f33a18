#!/usr/bin/env bash
# Install an edgemix board bundle: edgemix @VERSION@ for target @TARGET@ (@ARCH@).
#
#   sudo ./install.sh                       verify, install to /opt/edgemix, enable the service
#   ./install.sh --verify-only              check every file against MANIFEST.sha256; change nothing
#   ./install.sh --prefix DIR --no-system   verify, then a venv and a warm Numba cache in DIR
#                                           (no user, unit, limits or apt changes)
#   ./install.sh --render-only DIR          verify, then write the unit/limits files into DIR
#                                           with this install's paths, for review
# Other options: --user NAME (service user, default edgemix), --python PY (default python3),
# --offline (only the bundled wheels), --no-warmup, --no-apt, --start, --any-arch.
#
# The manifest is verified before anything else: a file that is missing, changed, added or
# a symlink makes the installer refuse before it creates a directory or runs pip.  (The
# manifest catches a corrupted or edited bundle; to trust a download, compare the tarball
# with the .sha256 published beside it.)
set -euo pipefail
export LC_ALL=C

BUNDLE_NAME="@NAME@"
BUNDLE_VERSION="@VERSION@"
BUNDLE_TARGET="@TARGET@"
BUNDLE_ARCH="@ARCH@"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

prefix=/opt/edgemix
user=edgemix
python=python3
verify_only=0
render_only=""
system=1
offline=0
warm=1
apt=1
start=0
any_arch=0

refuse() { echo "install.sh: REFUSING to install: $*" >&2; exit 1; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --verify-only) verify_only=1 ;;
    --render-only) render_only="${2:?--render-only needs a directory}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift ;;
    --user) user="${2:?--user needs a name}"; shift ;;
    --python) python="${2:?--python needs an interpreter}"; shift ;;
    --no-system) system=0 ;;
    --offline) offline=1 ;;
    --no-warmup) warm=0 ;;
    --no-apt) apt=0 ;;
    --start) start=1 ;;
    --any-arch) any_arch=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# ---- 1. verify every file against the manifest, before touching anything ----------------
verify_manifest() {
  local manifest="$here/MANIFEST.sha256" line prev="" path want got n=0
  [ -f "$manifest" ] && [ ! -L "$manifest" ] || refuse "MANIFEST.sha256 is missing"
  local listed
  listed=$(mktemp) || die "cannot create a temporary file"
  trap 'rm -f "$listed"' RETURN
  while IFS= read -r line || [ -n "$line" ]; do
    # One line per file, "<sha256>  <relative path>", sorted by path, each path once.
    [[ "$line" =~ ^([0-9a-f]{64})\ \ ([A-Za-z0-9._+/-]+)$ ]] \
      || refuse "MANIFEST.sha256 has a malformed line: ${line:0:80}"
    want=${BASH_REMATCH[1]}
    path=${BASH_REMATCH[2]}
    case "/$path/" in */../*|*/./*|//*) refuse "MANIFEST.sha256 names an unsafe path: $path" ;; esac
    [[ -z "$prev" || "$path" > "$prev" ]] || refuse "MANIFEST.sha256 is not sorted or lists $path twice"
    prev=$path
    [ -f "$here/$path" ] && [ ! -L "$here/$path" ] || refuse "$path is missing (or not a regular file)"
    got=$(sha256sum < "$here/$path") || refuse "cannot read $path"
    [ "${got:0:64}" = "$want" ] || refuse "$path does not match its checksum (changed or corrupt)"
    printf '%s\n' "$path" >> "$listed"
    n=$((n + 1))
  done < "$manifest"
  [ "$n" -gt 0 ] || refuse "MANIFEST.sha256 lists no files"
  local extra
  extra=$(cd "$here" && find . -mindepth 1 ! -type d ! -path ./MANIFEST.sha256 -printf '%P\n' \
          | sort | comm -23 - "$listed" | head -n 3)
  [ -z "$extra" ] || refuse "files not in the manifest: $(echo $extra)"
  if (cd "$here" && find . -mindepth 1 ! -type d ! -type f | grep -q .); then
    refuse "the bundle holds symlinks or special files"
  fi
  say "manifest OK: $n files of $BUNDLE_NAME $BUNDLE_VERSION for $BUNDLE_TARGET verified"
}
verify_manifest
[ "$verify_only" = 1 ] && exit 0

# ---- 2. the files this install would write -----------------------------------------------
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
if [ "$system" = 1 ]; then
  cache_dir=/var/cache/edgemix/numba      # systemd's CacheDirectory=edgemix
else
  cache_dir="$prefix/numba-cache"
fi

render() {  # fill in this install's paths and user
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@USER@|$user|g" -e "s|@CACHE_DIR@|$cache_dir|g" "$1"
}

render_system_files() {  # into directory $1
  mkdir -p "$1"
  local f
  for f in "$here"/systemd/*.service; do render "$f" > "$1/$(basename "$f")"; done
  render "$here/limits.d/99-edgemix-audio.conf" > "$1/99-edgemix-audio.conf"
}

if [ -n "$render_only" ]; then
  render_system_files "$render_only"
  say "rendered the system files into $render_only (nothing installed)"
  exit 0
fi

# ---- 3. can this machine take it? --------------------------------------------------------
machine=$(uname -m)
if [ "$any_arch" = 0 ] && [ "$machine" != "$BUNDLE_ARCH" ]; then
  die "this bundle is for $BUNDLE_ARCH, this machine is $machine: build one with" \
      "\`edgemix board bundle --target <profile for $machine>\` (or pass --any-arch)"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$python is missing or older than 3.11: install Python 3.11+ (Debian/Raspberry Pi OS bookworm: apt install python3)"
"$python" -c 'import ensurepip, venv' 2>/dev/null \
  || die "$python cannot create a venv: apt install python3-venv"
if [ "$system" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "a system install needs root: sudo $0 $*, or --prefix DIR --no-system for a user install"
fi

# ---- 4. system packages (system install only) --------------------------------------------
if [ "$system" = 1 ] && [ "$apt" = 1 ] && command -v apt-get >/dev/null; then
  want=$(sed 's/#.*//' "$here/apt-packages.txt" | tr -s ' \n' '\n' | sed '/^$/d')
  missing=()
  for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# ---- 5. the runtime: files, venv, wheels -------------------------------------------------
mkdir -p "$prefix/bin"
cp -R "$here/models" "$prefix/"
cp "$here/profile.toml" "$here/session.toml" "$here/bundle.json" "$here/README.txt" \
   "$here/MANIFEST.sha256" "$prefix/"
install -m 755 "$here/bin/cpu-governor.sh" "$prefix/bin/cpu-governor.sh"
[ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
pip=("$prefix/venv/bin/python" -m pip install --disable-pip-version-check -q)
wheel=$(ls "$here"/wheels/"$BUNDLE_NAME"-*.whl)
if [ "$offline" = 1 ] || [ -f "$here/wheels/BUNDLED" ]; then
  say "installing from the bundled wheels (no network)"
  "${pip[@]}" --no-index --find-links "$here/wheels" -r "$here/requirements.txt" "$wheel"
else
  say "installing from PyPI (online install; bundle with --with-wheels for an offline one)"
  "${pip[@]}" -r "$here/requirements.txt" "$wheel"
fi

# ---- 6. the service user and the system files --------------------------------------------
if [ "$system" = 1 ]; then
  if ! id "$user" >/dev/null 2>&1; then
    say "creating the system user $user (group audio)"
    getent group audio >/dev/null || groupadd --system audio
    useradd --system --home-dir "$prefix" --no-create-home --shell /usr/sbin/nologin \
            --groups audio "$user"
  fi
  mkdir -p "$cache_dir"
  chown -R "$user" "$(dirname "$cache_dir")"
  staging=$(mktemp -d)
  render_system_files "$staging"
  install -m 644 "$staging"/*.service /etc/systemd/system/
  install -m 644 "$staging/99-edgemix-audio.conf" /etc/security/limits.d/
  rm -rf "$staging"
  systemctl daemon-reload
  systemctl enable edgemix.service
  for extra in edgemix-governor edgemix-jack; do
    if [ -f "$here/systemd/$extra.service" ]; then systemctl enable "$extra.service"; fi
  done
else
  mkdir -p "$cache_dir"
fi

# ---- 7. warm Numba's cache so the first start compiles nothing ---------------------------
if [ "$warm" = 1 ]; then
  say "warming the Numba cache in $cache_dir (a few minutes on a Pi the first time)"
  warm_cmd=(env NUMBA_CACHE_DIR="$cache_dir" "$prefix/venv/bin/edgemix" board warmup
            --profile "$prefix/profile.toml" --session "$prefix/session.toml")
  if [ "$system" = 1 ]; then runuser -u "$user" -- "${warm_cmd[@]}"; else "${warm_cmd[@]}"; fi
fi

if [ "$system" = 1 ] && [ "$start" = 1 ]; then
  systemctl start edgemix-governor.service 2>/dev/null || true
  systemctl start edgemix-jack.service 2>/dev/null || true
  systemctl start edgemix.service
fi
say "installed $BUNDLE_NAME $BUNDLE_VERSION ($BUNDLE_TARGET) in $prefix"
if [ "$system" = 1 ]; then
  say "next: log in again (limits), check with '$prefix/venv/bin/edgemix board check --target $prefix/profile.toml', start with 'systemctl start edgemix'"
fi
