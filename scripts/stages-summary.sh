#!/usr/bin/env bash
# Print what ran and how long each stage took; exit non-zero when any stage failed.
set -uo pipefail
results=.cache/stages/results.tsv
if [ ! -s "$results" ]; then
  echo "no stage ran" >&2
  exit 1
fi
# For each failed stage, what failed, from its log (the full logs are in .cache/stages/): CI keeps
# only the end of its output, and a long stage's failures scroll out of it.
while IFS=$'\t' read -r name status _; do
  [ "$status" = passed ] && continue
  printf '\n--- %s %s: failures from .cache/stages/%s.log\n' "$name" "$status" "${name//\//_}"
  # A stage ended by its STAGE_TIMEOUT: the processes that were still running (scripts/stage.sh).
  grep -E '^!!! |\\_ .*(molecule|ansible-playbook|pytest|docker exec|timeout )' \
    ".cache/stages/${name//\//_}.log" 2>/dev/null | cut -c1-300 | head -30
  grep -E '^(FAILED|ERROR) |^E  |\[FAIL\]|^fatal: |FAILED! =>' ".cache/stages/${name//\//_}.log" 2>/dev/null \
    | grep -vE '^E +(\?|-|\+|\[|\]|$)' | cut -c1-400 | head -40
done < "$results"
total=0
failed=0
printf '\n%-28s %-16s %8s\n' STAGE RESULT SECONDS
printf '%-28s %-16s %8s\n' ---------------------------- ---------------- --------
while IFS=$'\t' read -r name status secs; do
  printf '%-28s %-16s %8s\n' "$name" "$status" "$secs"
  total=$((total + secs))
  [ "$status" = passed ] || failed=$((failed + 1))
done < "$results"
printf '%-28s %-16s %8s\n' TOTAL "$([ $failed -eq 0 ] && echo passed || echo "$failed failed")" "$total"
[ $failed -eq 0 ]
