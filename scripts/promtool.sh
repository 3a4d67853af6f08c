#!/usr/bin/env bash
# Run promtool (Prometheus' rule checker and rule unit tester) on the controller without installing
# the prometheus service: download Debian's prometheus package (bookworm: 2.42) with
# `apt-get download`, extract usr/bin/promtool from it into .cache/promtool/ and exec it with the
# given arguments. The binary is cached: the package is fetched only when it is missing.
# Usage: scripts/promtool.sh check rules roles/monitoring/files/prometheus/rules/tutormax.yml
#        scripts/promtool.sh test rules tests/promtool/*.yml
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$repo/.cache/promtool"
promtool="$cache/promtool"

fetch() {
  local work deb
  mkdir -p "$cache"
  # Several test workers may call this at once: each works in its own directory and the binary is
  # renamed into place, so nobody ever runs a half-written file.
  work=$(mktemp -d "$cache/fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # apt's _apt user downloads into the directory when it may: let it (no "unsandboxed" warning).
  chmod 0755 "$work"
  if ! (cd "$work" && apt-get download -qq prometheus >"$work/apt.log" 2>&1); then
    # A machine that never ran apt-get update knows no package: update the lists when we may.
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
    fi
    if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
      echo "promtool: apt-get download prometheus failed; running apt-get update and trying again" >&2
      $sudo apt-get update -qq >>"$work/apt.log" 2>&1 || true
    fi
    if ! (cd "$work" && apt-get download -qq prometheus >>"$work/apt.log" 2>&1); then
      {
        echo "promtool: cannot fetch promtool: \`apt-get download prometheus\` failed."
        echo "promtool: it needs a Debian/Ubuntu controller whose apt sources carry the prometheus"
        echo "promtool: package (bookworm: 2.42) and can reach them. apt said:"
        sed 's/^/  /' "$work/apt.log"
      } >&2
      exit 1
    fi
  fi
  deb=$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
  if [ -z "$deb" ]; then
    echo "promtool: apt-get download prometheus left no prometheus_*.deb in $work" >&2
    exit 1
  fi
  dpkg-deb -x "$deb" "$work/root"
  if [ ! -x "$work/root/usr/bin/promtool" ]; then
    echo "promtool: $(basename "$deb") holds no usr/bin/promtool" >&2
    exit 1
  fi
  mv -f "$work/root/usr/bin/promtool" "$promtool"
  rm -rf "$work"
  trap - EXIT
}

if [ ! -x "$promtool" ]; then
  fetch
fi
exec "$promtool" "$@"
