#!/usr/bin/env bash
# Build the offline Debian 12 test-host image (systemd as PID 1) with debootstrap + docker import.
# Usage: build.sh [print-tag]
#   print-tag  only print the image tag this recipe produces.
# The tag carries a hash of this recipe, so the image is rebuilt only when the recipe changes.
# TUTORMAX_TEST_IMAGE (set by the user) skips the build: the scenarios use that image instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo="tutormax-testhost"
series="bookworm"
recipe_hash=$(cat "$here/build.sh" "$here/packages.txt" "$here/apt-cache.txt" | sha256sum | cut -c1-12)
tag="$repo:$series-$recipe_hash"
alias_tag="$repo:$series"

if [ "${1:-}" = "print-tag" ]; then
  echo "$tag"
  exit 0
fi
if [ -n "${TUTORMAX_TEST_IMAGE:-}" ]; then
  echo "image: TUTORMAX_TEST_IMAGE=$TUTORMAX_TEST_IMAGE given, not building"
  exit 0
fi
if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" "$alias_tag"
  echo "image: $tag is up to date"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "image: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
mirror="${TUTORMAX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${TUTORMAX_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
list() { grep -v '^\s*#' "$1" | grep -v '^\s*$' | tr '\n' ' '; }
root=$(mktemp -d /var/tmp/tutormax-testhost.XXXXXX)
cleanup() { umount -l "$root/proc" 2>/dev/null || true; rm -rf "$root"; }
trap cleanup EXIT
start=$(date +%s)

echo "image: debootstrap $series into $root"
debootstrap --variant=minbase --include="$(list "$here/packages.txt" | tr ' ' ',' | sed 's/,$//')" \
  "$series" "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $series main
deb $mirror $series-updates main
deb $security_mirror $series-security main
SOURCES
# Containers have no kernel of their own to tune or clock to set: mask what cannot work there.
chroot "$root" systemctl mask systemd-udevd.service systemd-udevd-kernel.socket \
  systemd-udevd-control.socket getty@tty1.service console-getty.service \
  systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount >/dev/null 2>&1 || true
echo "tutormax-testhost" >"$root/etc/hostname"
: >"$root/etc/machine-id"

echo "image: pre-seeding the apt cache"
mount -t proc proc "$root/proc"
apt_in() { chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root -y -qq "$@"; }
apt_in update
apt_in upgrade >/dev/null 2>&1
# shellcheck disable=SC2046
apt_in install --download-only $(list "$here/apt-cache.txt") >/dev/null
umount "$root/proc"
rm -rf "$root/var/log/"*.log "$root/tmp/"*

echo "image: importing as $tag"
tar -C "$root" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' \
  -c 'ENV container=docker' \
  -c "LABEL org.opencontainers.image.title=tutormax-testhost org.tutormax.recipe=$recipe_hash" \
  - "$tag" >/dev/null
docker tag "$tag" "$alias_tag"
echo "image: built $tag in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
