#!/usr/bin/env bash
# Debian packages the controller needs: debootstrap for the test-host image, python3-venv for the
# tool environment, and the real servers the app's tests start on loopback (PostgreSQL 15, Redis,
# Sentinel), shellcheck (ansible-test sanity skips its shell test silently without it), and Chromium
# with a font (the dashboard's screenshot tests run it headless). Installs only what is missing.
set -euo pipefail
packages=(debootstrap python3-venv postgresql-15 postgresql-contrib redis-server redis-sentinel redis-tools wrk shellcheck chromium fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "host packages: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
