"""Search every host of the cluster scenario, and Ansible's output, for the values of the secrets file.

Where (issue 17, item 4): each host's journal (`journalctl` of every boot, so compressed entries
count), every file under /var/log, every world-readable regular file under /etc and /opt (up to
``SCAN_MAX_BYTES`` each: the releases' virtualenvs hold large compiled libraries that no deployment
step writes to), and the command line of every process. The values reach each host's scanner on
stdin (JSON), never on a command line, and a hit is reported by the secret's name and the place,
never by its value.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping

# Runs in each container with the host's python3 (stdlib only). stdin: {"name": "value", ...}.
# stdout: one JSON object {"hits": [[name, place], ...], "scanned": {what: count}}.
HOST_SCANNER = r"""
import json, os, stat, subprocess, sys
secrets = {k: v.encode() for k, v in json.load(sys.stdin).items() if v}
LIMIT = int(sys.argv[1])
hits, scanned = [], {"journal_bytes": 0, "log_files": 0, "readable_files": 0, "processes": 0}
def look(data, place):
    for name, value in secrets.items():
        if value in data:
            hits.append([name, place])
journal = subprocess.run(["journalctl", "--no-pager", "--merge", "-o", "export"], capture_output=True).stdout
scanned["journal_bytes"] = len(journal)
look(journal, "journal")
def walk(top, want):
    for root, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for f in files:
            path = os.path.join(root, f)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and want(st):
                yield path, st
for path, st in walk("/var/log", lambda st: True):
    scanned["log_files"] += 1
    with open(path, "rb") as fh:
        look(fh.read(), path)
for top in ("/etc", "/opt"):
    for path, st in walk(top, lambda st: st.st_mode & stat.S_IROTH and st.st_size <= LIMIT):
        scanned["readable_files"] += 1
        try:
            with open(path, "rb") as fh:
                look(fh.read(), path)
        except OSError:
            pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        scanned["processes"] += 1
        look(cmdline, f"/proc/{pid}/cmdline " + cmdline.replace(b"\0", b" ")[:60].decode(errors="replace"))
print(json.dumps({"hits": hits, "scanned": scanned}))
"""

SCAN_MAX_BYTES = 4 * 1024 * 1024


def scan_host(host: str, secrets: Mapping[str, str]) -> dict[str, object]:
    """Hits (secret name, place) and what was scanned on one container."""
    done = subprocess.run(
        ["docker", "exec", "-i", host, "python3", "-c", HOST_SCANNER, str(SCAN_MAX_BYTES)],
        input=json.dumps(dict(secrets)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{host}: the scan failed: {done.stderr[-2000:]}"
    return dict(json.loads(done.stdout))


def scan_text(text: str, secrets: Mapping[str, str]) -> list[str]:
    """Names of the secrets whose value occurs in ``text``."""
    return [name for name, value in secrets.items() if value and value in text]
