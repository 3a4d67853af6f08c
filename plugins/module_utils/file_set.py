# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Directories and small files of a host, converged together in one call (module host_files)."""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class FileError(Exception):
    """A file or directory could not be put in place; the message names it."""


def ids(owner: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError as exc:
        raise FileError(f"owner {owner!r} does not exist on the host") from exc
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise FileError(f"group {group!r} does not exist on the host") from exc
    return uid, gid


def mode_of(text: str) -> int:
    """An octal mode given as text ('0644'); anything else is refused."""
    if not isinstance(text, str) or not text.isdigit() or len(text) not in (3, 4) or any(c in "89" for c in text):
        raise FileError(f"mode must be an octal string such as '0644' (got {text!r})")
    return int(text, 8)


def state_of(path: Path) -> dict[str, Any] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777, "is_dir": path.is_dir()}


def directory_changes(item: Mapping[str, Any], uid: int, gid: int) -> list[str]:
    """What differs for a directory: 'created', 'owner', 'mode' (empty when it is as wanted)."""
    path = Path(item["path"])
    st = state_of(path)
    if st is None:
        return ["created"]
    if not st["is_dir"]:
        raise FileError(f"{path} exists and is not a directory")
    changes = []
    if (st["uid"], st["gid"]) != (uid, gid):
        changes.append("owner")
    if st["mode"] != mode_of(item["mode"]):
        changes.append("mode")
    return changes


def file_changes(item: Mapping[str, Any], uid: int, gid: int) -> list[str]:
    """What differs for a file: 'created', 'content', 'owner', 'mode'."""
    path = Path(item["path"])
    st = state_of(path)
    if st is None:
        return ["created"]
    if st["is_dir"]:
        raise FileError(f"{path} is a directory, not a file")
    changes = []
    if path.read_bytes() != item["content"].encode():
        changes.append("content")
    if (st["uid"], st["gid"]) != (uid, gid):
        changes.append("owner")
    if st["mode"] != mode_of(item["mode"]):
        changes.append("mode")
    return changes


def make_directory(item: Mapping[str, Any], uid: int, gid: int) -> None:
    path = Path(item["path"])
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode_of(item["mode"]))


def write_file(item: Mapping[str, Any], uid: int, gid: int, changes: list[str]) -> None:
    """Write atomically (a temporary file beside it, checked with ``validate`` first, then renamed);
    only owner and mode when the content is the same."""
    path = Path(item["path"])
    mode = mode_of(item["mode"])
    if changes and set(changes) <= {"owner", "mode"}:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(item["content"].encode())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        validate = item.get("validate") or ""
        if validate:
            argv = [part.replace("%s", str(tmp)) for part in shlex.split(validate)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - the role's command
            if done.returncode != 0:
                raise FileError(f"{path}: validate ({validate}) refused it: {(done.stderr or done.stdout).strip()}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def text_of(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return ""
