# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Decide from pgBackRest's answers and the user's input (issue 19, backups and restore).

- ``summarize_info``: ``pgbackrest info --output=json`` of one stanza read as the stanza's health, its
  backups, and the age of the newest full and differential backup (a newer full counts as a newer
  differential: it holds everything a differential would).
- ``wal_segment_end`` / ``archive_lag_bytes``: how far the newest archived WAL segment ends behind the
  leader's current LSN (the RPO of the archive at this moment).
- ``restore_target``: a restore target (latest, time, lsn or name), and optionally the backup set to
  restore from, checked against the backups and the clock, as pgBackRest's ``--type``/``--target``/
  ``--set`` options, or the problems in words.
- ``backup_inventory_problems``: the inventory's backup hosts and cipher passphrase checked before
  anything changes.

The shapes follow pgBackRest 2.45 (Debian 12's package; tests/data/pgbackrest_info_2.45.json is its
real output): the info output is a list of stanzas, each with ``name``, ``status`` {code, message},
``cipher``, ``backup`` (oldest first: ``label``, ``type`` full/diff/incr, ``timestamp`` {start, stop}
epoch seconds, ``lsn`` {start, stop}, ``archive`` {start, stop}, ``info`` {size, repository {size,
delta}}, ``error`` since 2.36) and ``archive`` (per database: ``min``/``max`` WAL segment names).

Stdlib only: this runs on the hosts and in filters.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: PostgreSQL's default WAL segment size (initdb --wal-segsize; Debian's clusters keep it).
WAL_SEGMENT_SIZE = 16 * 1024 * 1024
#: pgBackRest's restore --type values for a target, by the name users give the kind of target.
TARGET_TYPES = {"time": "time", "lsn": "lsn", "name": "name"}
LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
WAL_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
#: PostgreSQL's restore point names are at most NAMEDATALEN - 1 bytes.
MAX_RESTORE_POINT = 63
#: Passphrases the preflight refuses: empty, or the placeholders the examples and vault templates use.
PLACEHOLDERS = frozenset({"", "changeme", "change-me", "changeit", "secret", "password", "todo", "xxx"})
#: The placeholder_secret test's rule (plugins/test/secret.py), so the example vault's CHANGE_ME_... values fail.
PLACEHOLDER_RE = re.compile(
    r"change[\W_]*me|placeholder|replace[\W_]*me|^(?:password|secret|tutormax|redis|postgres)\d*$|^x{3,}$|^\*+$",
    re.IGNORECASE,
)
MIN_PASSPHRASE = 20


class PgBackRestError(ValueError):
    """pgBackRest's output is not what this module understands."""


def lsn_to_int(lsn: str) -> int:
    """``'0/3000050'`` as a byte position."""
    match = LSN_RE.match(str(lsn).strip())
    if not match:
        raise PgBackRestError(f"not an LSN: {lsn!r} (expected two hex numbers, like 0/3000050)")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def wal_segment_end(segment: str, segment_size: int = WAL_SEGMENT_SIZE) -> int:
    """The byte position just after WAL segment ``segment`` (``000000010000000000000005``)."""
    match = WAL_RE.match(str(segment).strip())
    if not match:
        raise PgBackRestError(f"not a WAL segment name: {segment!r}")
    per_log = 0x100000000 // segment_size
    log, seg = int(match.group(2), 16), int(match.group(3), 16)
    return (log * per_log + seg + 1) * segment_size


def archive_lag_bytes(current_lsn: str, newest_archived: str | None, segment_size: int = WAL_SEGMENT_SIZE) -> int:
    """Bytes of WAL the leader has written past the end of the newest archived segment (0 when the
    archive has everything up to a segment boundary at or after ``current_lsn``); with nothing
    archived, all of it."""
    current = lsn_to_int(current_lsn)
    if not newest_archived:
        return current
    return max(0, current - wal_segment_end(newest_archived, segment_size))


def _stanza(info: Any, stanza: str) -> Mapping[str, Any]:  # noqa: ANN401 - parsed JSON
    if not isinstance(info, list):
        raise PgBackRestError(f"pgbackrest info: expected a list of stanzas (got {type(info).__name__})")
    for entry in info:
        if isinstance(entry, Mapping) and entry.get("name") == stanza:
            return entry
    names = ", ".join(str(e.get("name")) for e in info if isinstance(e, Mapping)) or "none"
    raise PgBackRestError(f"pgbackrest info: no stanza {stanza!r} (stanzas: {names})")


def summarize_info(info: Any, stanza: str, now: float) -> dict[str, Any]:  # noqa: ANN401 - parsed JSON
    """One stanza of ``pgbackrest info --output=json``: status, backups and ages (seconds at ``now``)."""
    entry = _stanza(info, stanza)
    status = entry.get("status") or {}
    backups = []
    for b in entry.get("backup") or []:
        times, info_ = b.get("timestamp") or {}, b.get("info") or {}
        backups.append(
            {
                "label": b.get("label"),
                "type": b.get("type"),
                "start": times.get("start"),
                "stop": times.get("stop"),
                "lsn_stop": (b.get("lsn") or {}).get("stop"),
                "size": info_.get("size"),
                "repo_size": (info_.get("repository") or {}).get("size"),
                "repo_delta": (info_.get("repository") or {}).get("delta"),
                "good": not b.get("error", False),
            }
        )
    good = [b for b in backups if b["good"] and isinstance(b["stop"], int)]
    full = [b for b in good if b["type"] == "full"]
    diff = [b for b in good if b["type"] in ("full", "diff")]
    archives = [a for a in entry.get("archive") or [] if isinstance(a, Mapping)]
    newest_wal = max((str(a["max"]) for a in archives if a.get("max")), default=None)
    oldest_wal = min((str(a["min"]) for a in archives if a.get("min")), default=None)

    def age(items: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not items:
            return None
        last = max(items, key=lambda b: b["stop"])
        return {"label": last["label"], "type": last["type"], "stop": last["stop"], "age_s": round(now - last["stop"])}

    return {
        "stanza": stanza,
        "ok": status.get("code") == 0,
        "status": status.get("message", "unknown"),
        "cipher": entry.get("cipher"),
        "backups": backups,
        "count": len(good),
        "failed": len(backups) - len(good),
        "last_full": age(full),
        "last_diff": age(diff),
        "oldest": min(good, key=lambda b: b["stop"]) if good else None,
        # What the backups themselves take in the repository (each stores its delta; WAL not counted).
        "repo_backup_bytes": sum(b["repo_delta"] or 0 for b in backups),
        "archive": {"min": oldest_wal, "max": newest_wal},
    }


def age_problems(summary: Mapping[str, Any], max_full_age_s: int, max_diff_age_s: int) -> list[str]:
    """Sentences for a stanza whose newest full or differential backup is too old, or missing."""
    problems = []
    if not summary.get("ok"):
        problems.append(f"Stanza {summary.get('stanza')}: pgBackRest reports {summary.get('status')!r}.")
    for key, limit, what, var in (
        ("last_full", max_full_age_s, "full", "pgbackrest_max_full_age_hours"),
        ("last_diff", max_diff_age_s, "differential (or full)", "pgbackrest_max_diff_age_hours"),
    ):
        last = summary.get(key)
        if last is None:
            problems.append(
                f"No good {what} backup in the repository: run playbooks/pg_backup.yml, then look at its log."
            )
        elif last["age_s"] > limit:
            problems.append(
                f"The newest {what} backup ({last['label']}) is {last['age_s'] / 3600:.1f} h old, more than "
                f"{limit / 3600:g} h ({var}): look at the backup timer's journal on the backup host."
            )
    return problems


def _parse_time(value: str) -> dt.datetime:
    text = str(value).strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # PostgreSQL and pgBackRest write offsets as +00; fromisoformat wants +00:00.
    text = re.sub(r"([+-]\d\d)$", r"\1:00", text)
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _chosen_set(backup_set: str | None, summary: Mapping[str, Any], problems: list[str]) -> Mapping[str, Any] | None:
    """The backup of ``summary`` labelled ``backup_set`` (None when no set is asked for, or a problem
    is added when the repository has no such backup)."""
    label = "" if backup_set is None else str(backup_set).strip()
    if not label:
        return None
    listed = [b for b in summary.get("backups") or [] if isinstance(b, Mapping)]
    for backup in listed:
        if backup.get("label") == label:
            return backup
    labels = ", ".join(str(b.get("label")) for b in listed) or "none"
    problems.append(
        f"Backup set {label!r} is not in the repository (pg_restore_set; its backups: {labels}): choose one of "
        "them, or leave pg_restore_set empty to let pgBackRest choose."
    )
    return None


def _utc(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def restore_target(
    kind: str,
    value: str | None,
    summary: Mapping[str, Any],
    now: float,
    *,
    backup_set: str | None = None,
) -> dict[str, Any]:
    """A restore target checked against the backups in ``summary`` and the clock.

    ``kind`` is ``latest`` (no value), ``time`` (ISO 8601 with a time zone), ``lsn`` or ``name`` (a
    restore point made with pg_create_restore_point). ``backup_set`` is the label of the backup to
    restore from (``--set``); empty or None lets pgBackRest choose. A time or LSN target must then
    come after that backup ended, instead of after the oldest one. Returns ``options`` (pgBackRest
    restore arguments), ``describe`` (in words) and ``problems`` (sentences that name the fix; empty
    when the target is usable).
    """
    kind = str(kind or "latest").strip().lower()
    oldest = summary.get("oldest")
    problems: list[str] = []
    if oldest is None:
        problems.append("The repository has no good backup to restore: take one first (playbooks/pg_backup.yml).")
    chosen = _chosen_set(backup_set, summary, problems)
    set_options = [f"--set={chosen['label']}"] if chosen is not None else []
    from_set = f", from backup set {chosen['label']}" if chosen is not None else ""
    if kind == "latest":
        if value not in (None, ""):
            problems.append(
                f"A restore to the latest point takes no target value (got {value!r}): leave pg_restore_target empty."
            )
        return {
            "options": ["--type=default", *set_options],
            "describe": f"the latest archived WAL{from_set}",
            "problems": problems,
        }
    if kind not in TARGET_TYPES:
        problems.append(
            f"Unknown restore target kind {kind!r} (pg_restore_target_type): use latest, time, lsn or name."
        )
        return {"options": [], "describe": "", "problems": problems}
    text = "" if value is None else str(value).strip()
    if not text:
        problems.append(f"A restore to a {kind} needs a target: set it (pg_restore_target).")
        return {"options": [], "describe": "", "problems": problems}
    target = text
    if kind == "time":
        try:
            when = _parse_time(text)
        except ValueError:
            problems.append(
                f"Restore time {text!r} is not an ISO 8601 time with a time zone: write it like "
                "2026-12-06 14:30:00+00:00."
            )
            return {"options": [], "describe": "", "problems": problems}
        stamp = when.timestamp()
        if stamp > now:
            problems.append(f"Restore time {text} is in the future: choose a time before now.")
        if chosen is not None:
            if isinstance(chosen.get("stop"), (int, float)) and stamp < chosen["stop"]:
                problems.append(
                    f"Restore time {text} is before backup set {chosen['label']} ended ({_utc(chosen['stop'])}): "
                    "choose a later time, or an older set (pg_restore_set), or leave pg_restore_set empty to let "
                    "pgBackRest choose."
                )
        elif oldest is not None and stamp < oldest["stop"]:
            problems.append(
                f"Restore time {text} is before the oldest backup ended ({oldest['label']}, {_utc(oldest['stop'])}): "
                "choose a later time, or keep backups longer (pgbackrest_retention_days)."
            )
        target = when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    elif kind == "lsn":
        try:
            wanted = lsn_to_int(text)
        except PgBackRestError as exc:
            problems.append(f"Restore LSN: {exc}.")
            return {"options": [], "describe": "", "problems": problems}
        if chosen is not None:
            if chosen.get("lsn_stop") and wanted < lsn_to_int(chosen["lsn_stop"]):
                problems.append(
                    f"Restore LSN {text} is before backup set {chosen['label']} ended (LSN {chosen['lsn_stop']}): "
                    "choose a later LSN, or an older set (pg_restore_set), or leave pg_restore_set empty to let "
                    "pgBackRest choose."
                )
        elif oldest is not None and oldest.get("lsn_stop") and wanted < lsn_to_int(oldest["lsn_stop"]):
            problems.append(
                f"Restore LSN {text} is before the oldest backup ended ({oldest['label']}, LSN {oldest['lsn_stop']}): "
                "choose a later LSN."
            )
    elif len(text.encode()) > MAX_RESTORE_POINT:
        problems.append(f"Restore point name {text!r} is longer than {MAX_RESTORE_POINT} bytes: no such point exists.")
    options = [f"--type={TARGET_TYPES[kind]}", f"--target={target}", "--target-action=promote", *set_options]
    return {"options": options, "describe": f"{kind} {text}{from_set}", "problems": problems}


def backup_inventory_problems(
    backup_hosts: Iterable[str] | None,
    postgres_hosts: Iterable[str] | None,
    cipher_pass: str | None,
) -> list[str]:
    """What is wrong with the backup group and the repository's passphrase (one sentence each)."""
    backup = [str(h) for h in backup_hosts or []]
    postgres = {str(h) for h in postgres_hosts or []}
    problems = []
    if not backup:
        problems.append(
            "No host in the backup group: add one (never a PostgreSQL host) to hold pgBackRest's repository."
        )
    elif len(backup) > 1:
        problems.append(
            f"The backup group has {len(backup)} hosts ({', '.join(backup)}): the repository lives on one; keep one."
        )
    shared = sorted(set(backup) & postgres)
    if shared:
        problems.append(
            f"{', '.join(shared)} is in both backup and postgres: a repository on a database host is lost with it; "
            "put the repository on a host of its own."
        )
    phrase = "" if cipher_pass is None else str(cipher_pass)
    if phrase.strip().lower() in PLACEHOLDERS or PLACEHOLDER_RE.search(phrase):
        problems.append(
            "vault_pgbackrest_cipher_pass is missing or a placeholder: put a random passphrase in the vault "
            "(e.g. openssl rand -base64 48)."
        )
    elif len(phrase) < MIN_PASSPHRASE:
        problems.append(
            f"vault_pgbackrest_cipher_pass is {len(phrase)} characters: use {MIN_PASSPHRASE} or more "
            "(e.g. openssl rand -base64 48)."
        )
    return problems
