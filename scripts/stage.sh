#!/usr/bin/env bash
# Run one named stage, time it, and record the result for scripts/stages-summary.sh.
# Usage: stage.sh NAME COMMAND [ARGS...]
# The stage's output goes to the terminal and to .cache/stages/NAME.log.
# STAGE_TIMEOUT (seconds, 0 for none) ends a stage that runs longer, after printing its process
# tree, so a hung command fails its own stage with a trace instead of holding CI until its limit.
set -uo pipefail
name=$1
shift
mkdir -p .cache/stages
log=".cache/stages/${name//\//_}.log"
start=$(date +%s)
printf '\n==> [%s] stage %s: %s\n' "$(date +%H:%M:%S)" "$name" "$*"
limit=${STAGE_TIMEOUT:-0}
if [ "$limit" -gt 0 ]; then
  # Ten seconds before the limit, show what is still running (a hung docker exec, a nested playbook).
  early=$((limit > 20 ? limit - 10 : limit))
  (
    # `wait` lets the TERM below end this watchdog at once, together with its sleep.
    sleep "$early" &
    nap=$!
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    wait "$nap"
    {
      printf '\n!!! [%s] stage %s still running after %d s; its processes:\n' \
        "$(date +%H:%M:%S)" "$name" "$early"
      ps --ppid 2 -p 2 --deselect -o pid,ppid,etimes,args --forest | cut -c1-300
    } | tee "$log.watchdog"
  ) &
  watchdog=$!
  timeout --kill-after=30 "$limit" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  kill "$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    [ -f "$log.watchdog" ] && cat "$log.watchdog" >> "$log"
    printf '!!! stage %s: ended by STAGE_TIMEOUT=%d s (rc=%d)\n' "$name" "$limit" "$rc" | tee -a "$log"
  fi
  rm -f "$log.watchdog"
else
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
fi
secs=$(( $(date +%s) - start ))
status=passed
[ "$rc" -eq 0 ] || status="FAILED(rc=$rc)"
printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >> .cache/stages/results.tsv
printf '<== [%s] stage %s %s in %d s\n' "$(date +%H:%M:%S)" "$name" "$status" "$secs"
exit "$rc"
