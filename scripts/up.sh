#!/usr/bin/env bash
# `make up`: the whole stack on local systemd containers, then the verify report.
# Re-running converges in place (changed=0 when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { printf '\n==> [%s, +%ds] %s\n' "$(date +%H:%M:%S)" $(( $(date +%s) - t0 )) "$*"; }
timings=()
run() {
  local name=$1
  shift
  local s
  s=$(date +%s)
  "$@"
  timings+=("$(printf '%-34s %5d s' "$name" $(( $(date +%s) - s )))")
}

step "containers (inventories/local: thirteen hosts, network tutormax-local)"
run containers ansible-playbook playbooks/local/cluster_containers.yml
step "secrets (generated once into inventories/local/group_vars/all/secrets.yml)"
run secrets ansible-playbook playbooks/local/secrets.yml
step "site.yml"
mkdir -p .cache
run site.yml bash -o pipefail -c 'ansible-playbook site.yml | tee .cache/make-up-site.log'
changed=$(awk '/^PLAY RECAP/{r=1;next} r&&/changed=/{sub("changed=","",$4); t+=$4; if ($4>0) h=h" "$1"("$4")"} END{print t+0" "h}' .cache/make-up-site.log)
step "verify"
run verify ansible-playbook playbooks/verify.yml

printf '\n%s\n' "make up: done in $(( $(date +%s) - t0 )) s; site.yml changed ${changed%% *} task(s)${changed#* }"
printf '  %s\n' "${timings[@]}"
cat <<'TXT'

The cluster answers on loopback:
  curl http://127.0.0.1:8080/health              # through the load balancer (HTTP)
  curl -k https://127.0.0.1:8443/api/health      # HTTPS (self-signed certificate)
  open http://127.0.0.1:8080/api/docs            # the API's OpenAPI UI
Shell into a host:      docker exec -it tutormax-api1 bash
Logs of a service:      docker exec tutormax-api1 journalctl -u tutormax-api -f
Cluster report again:   ansible-playbook playbooks/verify.yml
Containers:             make status      Remove everything: make down
TXT
