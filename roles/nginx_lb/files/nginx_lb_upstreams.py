"""Write nginx's upstream file, check the whole configuration and reload: one call per load balancer.

    nginx_lb_upstreams.py [--check] DEST CONTENT_BASE64 STATUS_PORT

The drain entry point of the nginx_lb role (tasks/upstream.yml) runs this with ansible.builtin.script,
so a rolling update spends one remote call per load balancer on each drain and return instead of
seven module runs. CONTENT_BASE64 is the role's own upstream template, rendered on the controller.

- Content equal to DEST (and DEST root:root 0644): nothing is touched, nginx is not reloaded.
- Otherwise the new file replaces DEST atomically (root:root 0644), `nginx -t` checks the whole
  configuration; a refusal puts the previous file back, nginx is not reloaded, exit 1.
- Then `systemctl reload nginx` (new workers take the file, old ones finish their requests) and a
  wait until http://127.0.0.1:STATUS_PORT/ping answers 200 (at most 20 s, else exit 1).
- --check: only say whether DEST would change.
Prints one JSON object: changed, reloaded, seconds, msg. Stdlib only (the hosts' python3).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MODE = 0o644
PING_TIMEOUT_S = 20.0


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - fixed commands


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, root:root 0644."""
    tmp = path.with_name(f".{path.name}.tutormax-new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    os.chmod(tmp, MODE)
    os.replace(tmp, path)


def _in_place(path: Path, data: bytes) -> bool:
    try:
        st = path.stat()
        same_owner = os.geteuid() != 0 or (st.st_uid, st.st_gid) == (0, 0)
        return path.read_bytes() == data and st.st_mode & 0o7777 == MODE and same_owner
    except OSError:
        return False


def wait_ping(port: int, timeout: float = PING_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def apply(dest: Path, data: bytes, status_port: int, check: bool = False) -> tuple[int, dict[str, object]]:
    start = time.monotonic()
    result: dict[str, object] = {"changed": False, "reloaded": False, "msg": "", "seconds": 0.0}
    if _in_place(dest, data):
        result["msg"] = f"{dest} already holds these upstreams"
        return 0, result
    result["changed"] = True
    if check:
        result["msg"] = f"{dest} would change"
        return 0, result
    previous = dest.read_bytes() if dest.exists() else None
    _write(dest, data)
    test = _run("nginx", "-t", "-q")
    if test.returncode != 0:
        if previous is None:
            dest.unlink(missing_ok=True)
        else:
            _write(dest, previous)
        result["msg"] = (
            "The new upstreams were refused by nginx -t and the previous file put back; nginx was not "
            f"reloaded. {test.stderr.strip()}"
        )
        return 1, result
    reload = _run("systemctl", "reload", "nginx")
    if reload.returncode != 0:
        result["msg"] = f"systemctl reload nginx failed: {reload.stderr.strip()}"
        return 1, result
    result["reloaded"] = True
    if not wait_ping(status_port):
        result["msg"] = f"nginx did not answer /ping on 127.0.0.1:{status_port} within {PING_TIMEOUT_S:.0f} s"
        return 1, result
    result["seconds"] = round(time.monotonic() - start, 2)
    result["msg"] = f"{dest} written, checked and nginx reloaded"
    return 0, result


def main(argv: list[str]) -> int:
    check = bool(argv) and argv[0] == "--check"
    args = argv[1:] if check else argv
    if len(args) != 3:
        sys.stderr.write(__doc__ or "")
        return 2
    rc, result = apply(Path(args[0]), base64.b64decode(args[1]), int(args[2]), check)
    print(json.dumps(result))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
