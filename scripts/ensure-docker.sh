#!/usr/bin/env bash
# Make sure a Docker engine answers. A new machine here has only the client: install docker.io
# and start dockerd in the background (as root) when `docker info` fails.
set -euo pipefail
# Every systemd container takes several inotify instances; the kernel default (128 per user) stops
# the twelfth or so container's systemd with exit 255 and no log. Raise it when we may.
raise_inotify() {
  local want=1024 have
  have=$(sysctl -n fs.inotify.max_user_instances 2>/dev/null || echo "$want")
  if [ "$have" -lt "$want" ]; then
    if [ "$(id -u)" -eq 0 ]; then sysctl -qw fs.inotify.max_user_instances=$want || true
    elif command -v sudo >/dev/null; then sudo sysctl -qw fs.inotify.max_user_instances=$want || true
    fi
  fi
}
raise_inotify
if docker info >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: no engine here, installing docker.io"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  # A machine started from a snapshot can carry the pid files of an engine that no longer runs;
  # dockerd refuses to start while its pid file names a live process, whatever that process is
  # ("pid file found, ensure docker is not running"). No dockerd runs, so these are stale.
  for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -e "$f" ]; then
      echo "docker: removing stale $f (pid $(cat "$f" 2>/dev/null || echo '?'); no dockerd runs)"
      $SUDO rm -f "$f"
    fi
  done
  echo "docker: starting dockerd in the background (log: /var/log/tutormax-dockerd.log)"
  $SUDO sh -c 'nohup setsid dockerd >/var/log/tutormax-dockerd.log 2>&1 &'
fi
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "docker: engine answers ($(docker info -f '{{.ServerVersion}}'))"
    exit 0
  fi
  sleep 1
done
echo "docker: the engine did not answer within 120 s; see /var/log/tutormax-dockerd.log" >&2
tail -20 /var/log/tutormax-dockerd.log >&2 || true
exit 1
