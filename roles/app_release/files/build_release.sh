#!/usr/bin/env bash
# Build a TutorMax release on the controller. Hosts install it offline; they never reach PyPI and
# never build code. Three artifacts, each built once and kept in the build directory:
#   OUTPUT_DIR/tutormax-release-VERSION.tar   the app wheel at VERSION, requirements.lock, VERSION and
#                                             DEPS (the lock hash): tens of KB, copied to every host
#                                             (with .sha256, .deps and .key beside it);
#   BUILD_DIR/wheelhouse-<lock hash>.tar      every pinned dependency for the hosts' Python (Debian 12:
#                                             CPython 3.11, manylinux x86_64), shared by every version
#                                             built from the same lock; a host gets it only when it
#                                             lacks that lock's dependency layer;
#   BUILD_DIR/uv-UV_VERSION/uv                the installer the hosts run offline (from the uv wheel of
#                                             PyPI): a host gets it once per uv version.
# BUILD_DIR is OUTPUT_DIR's parent. An archive is reused only when its .key matches the build's
# inputs (this script, the app's source files, the version and the uv version): a changed app
# built at an unchanged version, or an archive another revision of this script made, is rebuilt.
# Usage: build_release.sh APP_SOURCE_DIR VERSION OUTPUT_DIR UV_VERSION
#        build_release.sh --key APP_SOURCE_DIR VERSION UV_VERSION   (prints the inputs' key)
# Prints "build_release: built ..." when it wrote the archive, "build_release: exists ..." when not.
set -euo pipefail

# The sha256 of everything the archive is made from; no cache files (bytecode, tool caches).
input_key() {
  local src=$1 version=$2 uv_version=$3
  {
    printf 'version %s\nuv %s\nscript %s\n' "$version" "$uv_version" \
      "$(sha256sum < "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
    (cd "$src" && find . -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path './.*' ! -path '*/.*_cache/*' \
      ! -path './build/*' ! -path './dist/*' ! -path '*.egg-info/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--key" ]; then
  input_key "$(cd "$2" && pwd)" "$3" "${4:?usage: build_release.sh --key APP_SOURCE_DIR VERSION UV_VERSION}"
  exit 0
fi

src=$(cd "$1" && pwd)
version=$2
out=$3
uv_version=${4:?usage: build_release.sh APP_SOURCE_DIR VERSION OUTPUT_DIR UV_VERSION}
archive="$out/tutormax-release-$version.tar"
lock="$src/requirements.lock"
[ -f "$lock" ] || { echo "build_release: $lock is missing" >&2; exit 1; }
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.]+)?$ ]] || { echo "build_release: bad version '$version'" >&2; exit 1; }
mkdir -p "$out"
build_dir=$(dirname "$out")
lock_hash=$(sha256sum "$lock" | cut -c1-16)
wheelhouse="$build_dir/wheelhouse-$lock_hash"
wheelhouse_tar="$wheelhouse.tar"
uv_cache="$build_dir/uv-$uv_version"
python=${TUTORMAX_BUILD_PYTHON:-python3}
# The lock pins everything: ignore site-wide pip settings (extra indexes, constraints).
export PIP_CONFIG_FILE=/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One build at a time per build directory (several checkouts or plays may share it).
exec 9>"$build_dir/.build.lock"
flock 9
key=$(input_key "$src" "$version" "$uv_version")
if [ -f "$archive" ] && [ "$(cat "$archive.key" 2>/dev/null)" = "$key" ] \
  && [ -f "$wheelhouse_tar" ] && [ -x "$uv_cache/uv" ]; then
  echo "build_release: exists $archive"
  exit 0
fi

if [ ! -f "$wheelhouse/.complete" ]; then
  echo "build_release: downloading the wheels of $lock for CPython 3.11 manylinux x86_64"
  rm -rf "$wheelhouse"
  mkdir -p "$wheelhouse"
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
    -r "$lock" -d "$wheelhouse"
  touch "$wheelhouse/.complete"
fi

if [ ! -x "$uv_cache/uv" ]; then
  echo "build_release: downloading uv $uv_version for manylinux x86_64"
  rm -rf "$uv_cache"
  mkdir -p "$uv_cache"
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "uv==$uv_version" -d "$uv_cache"
  "$python" - "$uv_cache"/uv-*.whl "$uv_cache/uv.tmp" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
    with zf.open(name) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$uv_cache/uv.tmp"
  mv "$uv_cache/uv.tmp" "$uv_cache/uv"
fi

echo "build_release: building the tutormax $version wheel"
mkdir -p "$work/release/wheels"
TUTORMAX_VERSION=$version "$python" -m pip wheel -q --disable-pip-version-check --no-deps \
  --no-build-isolation -w "$work/release/wheels" "$src"
built=$(ls "$work/release/wheels"/tutormax-*.whl)
case "$(basename "$built")" in
  "tutormax-$version-"*) ;;
  *) echo "build_release: built $(basename "$built"), expected version $version" >&2; exit 1 ;;
esac
if [ ! -f "$wheelhouse_tar" ]; then
  mkdir -p "$work/deps/wheels"
  cp "$wheelhouse"/*.whl "$work/deps/wheels/"
  tar -C "$work/deps" -cf "$wheelhouse_tar.tmp" .
  mv "$wheelhouse_tar.tmp" "$wheelhouse_tar"
fi
echo "$lock_hash" > "$work/release/DEPS"
cp "$lock" "$work/release/requirements.lock"
echo "$version" > "$work/release/VERSION"
# Wheels are zip files already: a plain tar, compressing them again would only cost time.
tar -C "$work/release" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
echo "$lock_hash" > "$archive.deps"
sha256sum "$archive" | cut -d' ' -f1 > "$archive.sha256"
echo "$key" > "$archive.key"
echo "build_release: built $archive ($(du -h "$archive" | cut -f1), $(find "$work/release/wheels" -name '*.whl' | wc -l) wheels)"
