#!/bin/bash
# Failover drills for the redis scenario, run on the test hosts by side_effect.yml. Prints one JSON
# object per call; times are milliseconds on the hosts' shared clock. Passwords come from the
# environment: REDIS_PASSWORD (admin) and SENTINEL_PASSWORD.
#   drill.sh failover NAME ADDR...      SENTINEL FAILOVER on the local Sentinel; wait (10 s) until one
#                                       of ADDR (the redis-server hosts) is promoted
#   drill.sh kill                       SIGKILL the local redis-server and keep it down
#   drill.sh new-master NAME OLD T0 MS  wait (MS) until the local Sentinel names a master other than OLD
#   drill.sh revive                     start the local redis-server again
#   drill.sh follows MASTER T0 MS       wait (MS) until the local redis-server replicates from MASTER
set -euo pipefail

now() { echo $(( $(date +%s%N) / 1000000 )); }
redis() { REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli "$@" 2>/dev/null || true; }
sentinel() { REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli -p 26379 "$@" 2>/dev/null || true; }
master_of() { sentinel SENTINEL get-master-addr-by-name "$1" | head -n 1; }
role() { REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h "$1" ROLE 2>/dev/null | head -n 1 || true; }
dropin=/run/systemd/system/redis-server.service.d/drill-no-restart.conf

case "$1" in
  failover)
    name="$2"; shift 2
    old="$(master_of "$name")"
    t0="$(now)"
    sentinel SENTINEL FAILOVER "$name" >/dev/null
    while (( $(now) - t0 < 10000 )); do
      for addr in "$@"; do
        if [[ "$addr" != "$old" && "$(role "$addr")" == master ]]; then
          promoted="$(( $(now) - t0 ))"
          while [[ "$(master_of "$name")" == "$old" ]] && (( $(now) - t0 < 10000 )); do sleep 0.02; done
          echo "{\"old\": \"$old\", \"new\": \"$addr\", \"t0\": $t0, \"promoted_ms\": $promoted," \
               "\"sentinel_ms\": $(( $(now) - t0 ))}"
          exit 0
        fi
      done
      sleep 0.02
    done
    echo "{\"error\": \"no replica of $old was promoted within 10 s\"}"
    exit 1
    ;;
  kill)
    # Restart=always would bring redis-server straight back; a runtime drop-in keeps it down.
    mkdir -p "$(dirname "$dropin")"
    printf '[Service]\nRestart=no\n' > "$dropin"
    systemctl daemon-reload
    t0="$(now)"
    systemctl kill --signal=SIGKILL redis-server
    echo "{\"t0\": $t0}"
    ;;
  new-master)
    name="$2" old="$3" t0="$4" limit="$5"
    while (( $(now) - t0 < limit )); do
      current="$(master_of "$name")"
      if [[ -n "$current" && "$current" != "$old" ]]; then
        echo "{\"new\": \"$current\", \"elected_ms\": $(( $(now) - t0 ))}"
        exit 0
      fi
      sleep 0.02
    done
    echo "{\"error\": \"the Sentinels still name $old after $limit ms\"}"
    exit 1
    ;;
  revive)
    rm -f "$dropin"
    systemctl daemon-reload
    systemctl reset-failed redis-server || true
    systemctl start redis-server
    echo "{\"t0\": $(now)}"
    ;;
  follows)
    master="$2" t0="$3" limit="$4"
    while (( $(now) - t0 < limit )); do
      info="$(redis INFO replication | tr -d '\r')"
      if grep -qx "master_host:$master" <<<"$info" && grep -qx "master_link_status:up" <<<"$info"; then
        echo "{\"follows_ms\": $(( $(now) - t0 ))}"
        exit 0
      fi
      sleep 0.1
    done
    echo "{\"error\": \"redis-server does not replicate from $master after $limit ms\"}"
    exit 1
    ;;
  *)
    echo "usage: $0 failover|kill|new-master|revive|follows ..." >&2
    exit 2
    ;;
esac
