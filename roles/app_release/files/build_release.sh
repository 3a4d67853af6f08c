#!/usr/bin/env bash
# Build a TutorMax release on the controller: the app wheel at VERSION plus a wheelhouse of its
# pinned dependencies for the hosts' Python (Debian 12: CPython 3.11, manylinux x86_64), packed as
# one archive. Hosts install it offline; they never reach PyPI and never build code.
# Usage: build_release.sh APP_SOURCE_DIR VERSION OUTPUT_DIR UV_VERSION
# Writes OUTPUT_DIR/tutormax-release-VERSION.tar (and .sha256, and .deps: the lock hash). Wheels of
# the lock are cached in OUTPUT_DIR/../wheelhouse-<lock hash> and packed once into
# OUTPUT_DIR/../wheelhouse-<lock hash>.tar, shared by every version built from the same lock: the
# release archive holds the app wheel, the lock and uv only, and a host gets the wheelhouse only
# when it lacks that lock's dependency layer.
# The archive also carries bin/uv (from the uv wheel of PyPI, manylinux x86_64), the installer the
# hosts run offline: it installs the wheelhouse in a third of pip's time and needs no pip in the
# release's virtualenv.
# Prints "build_release: built ..." when it wrote the archive, "build_release: exists ..." when not.
set -euo pipefail
src=$(cd "$1" && pwd)
version=$2
out=$3
uv_version=${4:?usage: build_release.sh APP_SOURCE_DIR VERSION OUTPUT_DIR UV_VERSION}
archive="$out/tutormax-release-$version.tar"
lock="$src/requirements.lock"
[ -f "$lock" ] || { echo "build_release: $lock is missing" >&2; exit 1; }
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.]+)?$ ]] || { echo "build_release: bad version '$version'" >&2; exit 1; }
mkdir -p "$out"
lock_hash=$(sha256sum "$lock" | cut -c1-16)
wheelhouse="$(dirname "$out")/wheelhouse-$lock_hash"
uv_cache="$(dirname "$out")/uv-$uv_version"
python=${TUTORMAX_BUILD_PYTHON:-python3}
# The lock pins everything: ignore site-wide pip settings (extra indexes, constraints).
export PIP_CONFIG_FILE=/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One build at a time per build directory (several checkouts or plays may share it).
exec 9>"$(dirname "$out")/.build.lock"
flock 9
# An archive of an older build script (without DEPS, or whose wheelhouse archive is gone) is rebuilt.
if [ -f "$archive" ] && [ -f "$archive.deps" ] && tar -tf "$archive" ./DEPS >/dev/null 2>&1 \
  && [ -f "$(dirname "$out")/wheelhouse-$(cat "$archive.deps").tar" ]; then
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

if [ ! -f "$uv_cache/.complete" ]; then
  echo "build_release: downloading uv $uv_version for manylinux x86_64"
  rm -rf "$uv_cache"
  mkdir -p "$uv_cache"
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "uv==$uv_version" -d "$uv_cache"
  touch "$uv_cache/.complete"
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
wheelhouse_tar="$(dirname "$out")/wheelhouse-$lock_hash.tar"
if [ ! -f "$wheelhouse_tar" ]; then
  mkdir -p "$work/deps/wheels"
  cp "$wheelhouse"/*.whl "$work/deps/wheels/"
  tar -C "$work/deps" -cf "$wheelhouse_tar.tmp" .
  mv "$wheelhouse_tar.tmp" "$wheelhouse_tar"
fi
echo "$lock_hash" > "$work/release/DEPS"
cp "$lock" "$work/release/requirements.lock"
mkdir -p "$work/release/bin"
"$python" - "$uv_cache"/uv-*.whl "$work/release/bin/uv" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
    with zf.open(name) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
chmod 0755 "$work/release/bin/uv"
echo "$version" > "$work/release/VERSION"
# Wheels are zip files already: a plain tar, compressing them again would only cost time.
tar -C "$work/release" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
echo "$lock_hash" > "$archive.deps"
sha256sum "$archive" | cut -d' ' -f1 > "$archive.sha256"
echo "build_release: built $archive ($(du -h "$archive" | cut -f1), $(ls "$work/release/wheels" | wc -l) wheels)"
