#!/usr/bin/env bash
# Run pytest on a folder. pytest exits 5 when it collects no test: say so plainly and fail, so an
# emptied test folder can never look like a pass.
set -uo pipefail
dir=$1
shift
if [ ! -d "$dir" ]; then
  echo "pytest: $dir does not exist yet: no tests to run there (not counted as a pass)"
  exit 5
fi
pytest "$dir" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest: no tests were collected in $dir" >&2
fi
exit "$rc"
