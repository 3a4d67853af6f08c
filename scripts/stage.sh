#!/usr/bin/env bash
# Run one named stage, time it, and record the result for scripts/stages-summary.sh.
# Usage: stage.sh NAME COMMAND [ARGS...]
# The stage's output goes to the terminal and to .cache/stages/NAME.log.
set -uo pipefail
name=$1
shift
mkdir -p .cache/stages
log=".cache/stages/${name//\//_}.log"
start=$(date +%s)
printf '\n==> [%s] stage %s: %s\n' "$(date +%H:%M:%S)" "$name" "$*"
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
secs=$(( $(date +%s) - start ))
status=passed
[ "$rc" -eq 0 ] || status="FAILED(rc=$rc)"
printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >> .cache/stages/results.tsv
printf '<== [%s] stage %s %s in %d s\n' "$(date +%H:%M:%S)" "$name" "$status" "$secs"
exit "$rc"
