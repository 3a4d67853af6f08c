#!/usr/bin/env bash
# ansible-test sanity (validate-modules, ansible-doc, import, pylint, yamllint, shellcheck, ...) on
# the collection exactly as it ships: build the archive, extract it into a temporary
# ansible_collections/<namespace>/<name>/ tree (ansible-test refuses a symlink to the checkout) and
# run it there. Works offline (PyPI only) and from a fresh clone with an empty ~/.ansible.
# Usage: scripts/sanity.sh [EXTRA ansible-test sanity ARGS...]   e.g. --test pylint
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ -x .venv/bin/python ] && export PATH="$repo/.venv/bin:$PATH"
python_version=3.11
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/tutormax-sanity.XXXXXX")
finish() {
  local rc=$?
  rm -rf "$work"
  [ -z "${seed:-}" ] || rm -f "$seed"
  local status=passed
  [ "$rc" -eq 0 ] || status="FAILED (rc=$rc)"
  printf 'sanity: %s in %d s\n' "$status" "$(($(date +%s) - start))"
}
trap finish EXIT

run() {
  printf 'sanity: + %s\n' "$*"
  "$@"
}

# ansible-test's shellcheck test is skipped, not failed, when the binary is missing: refuse to run
# without it (scripts/ensure-host-packages.sh installs it, as make test and .ci/run do first).
command -v shellcheck >/dev/null 2>&1 || {
  echo "sanity: shellcheck is missing; run scripts/ensure-host-packages.sh" >&2
  exit 1
}

# ansible-test bootstraps pip in each test's virtual environment with get-pip.py, which it downloads
# from ci-files.testing.ansible.com (unreachable here) unless ~/.ansible/test/cache holds it. Seed
# that cache with a stand-in: the Python's bundled pip (ensurepip), then `pip install` of the
# packages ansible-test names (pip==<its version>) from PyPI. The file name carries the pip version
# this ansible-test pins, so ask ansible-test for it rather than hard-coding it.
pip_version=$(python - "$python_version" <<'PY'
import sys
from types import SimpleNamespace

from ansible_test._internal.python_requirements import get_venv_packages

print(get_venv_packages(SimpleNamespace(version=sys.argv[1]))["pip"])
PY
)
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
marker="# tutormax sanity.sh stand-in for get-pip.py"
if [ ! -f "$get_pip" ] || grep -qxF "$marker" "$get_pip"; then
  mkdir -p "$(dirname "$get_pip")"
  # Written aside and renamed: a sanity run in another checkout may read it at the same time.
  seed=$(mktemp "$get_pip.XXXXXX")
  cat > "$seed" <<PY
$marker
"""Bootstrap pip offline: ensurepip, then pip install of the non-option arguments (e.g. pip==$pip_version)."""

import subprocess
import sys

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True)
packages = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
if packages:
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *packages], check=True)
PY
  mv "$seed" "$get_pip"
  echo "sanity: pip bootstrap for ansible-test: $get_pip (stand-in, pip $pip_version)"
else
  echo "sanity: pip bootstrap for ansible-test: $get_pip (kept, not ours)"
fi

read -r namespace name < <(python -c \
  'import yaml; m = yaml.safe_load(open("galaxy.yml")); print(m["namespace"], m["name"])')
[ -n "${name:-}" ] || { echo "sanity: cannot read namespace and name from galaxy.yml" >&2; exit 1; }
# Built into the temporary directory: no stale archive of another version can be picked up.
run ansible-galaxy collection build --force --output-path "$work/dist" .
archive=$(find "$work/dist" -maxdepth 1 -name "$namespace-$name-*.tar.gz" -print -quit)
[ -n "$archive" ] || { echo "sanity: ansible-galaxy built no $namespace-$name archive" >&2; exit 1; }
tree="$work/ansible_collections/$namespace/$name"
mkdir -p "$tree"
run tar -xzf "$archive" -C "$tree"
# The ignore files are test configuration, not shipped content (tests/ is in build_ignore).
if [ -d tests/sanity ]; then
  mkdir -p "$tree/tests"
  run cp -R tests/sanity "$tree/tests/sanity"
fi

cd "$tree"
rc=0
run ansible-test sanity --local --python "$python_version" --color no --junit "$@" || rc=$?
# One line per test from its JUnit file (ansible-test prints skipped tests only with -v).
python - tests/output/junit <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

results = []
for path in sorted(Path(sys.argv[1]).glob("*.xml")):
    for case in ET.parse(path).iter("testcase"):
        status = "FAILED" if case.find("failure") is not None or case.find("error") is not None else "passed"
        if case.find("skipped") is not None:
            status = "skipped (" + (case.find("skipped").text or "").strip() + ")"
        results.append((case.get("name"), status))
for name, status in results:
    print(f"sanity: {name:<28} {status}")
failed = sum(status == "FAILED" for _, status in results)
print(f"sanity: {len(results)} tests, {failed} failed")
PY
[ "$rc" -eq 0 ] || exit "$rc"
