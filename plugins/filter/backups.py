# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters on pgBackRest's answers and the backup inventory (issue 19), sharing the hosts' code
(module_utils/pgbackrest.py): the stanza's backups and ages, the archive's lag, a restore target
checked against the backups, and the backup group and passphrase checked before anything changes.
Input these filters cannot read is an AnsibleFilterError that names the filter and the argument."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils import pgbackrest

HOUR = 3600


def _number(filter_name: str, name: str, value: Any) -> float:  # noqa: ANN401 - any inventory value
    """A finite number (a numeric string too: ansible_date_time.epoch is one), else the filter's error."""
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a number (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a number (got {value!r:.80})") from None
    if not math.isfinite(number):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a finite number (got {value!r})")
    return number


def _hosts(filter_name: str, name: str, value: Any) -> list[str]:  # noqa: ANN401 - any inventory value
    """A list of host names (None is none); a string or a mapping is an error, not a list of letters or keys."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a list of host names (got {value!r:.80})")
    return [str(h) for h in value]


def _summary(filter_name: str, summary: Any) -> Mapping[str, Any]:  # noqa: ANN401 - a filter's input
    if not isinstance(summary, Mapping) or "backups" not in summary:
        raise AnsibleFilterError(
            f"{filter_name}: expects the output of tutormax.cluster.pgbackrest_summary (got {summary!r:.80})"
        )
    return summary


def pgbackrest_summary(info: Any, stanza: str, now: Any) -> dict[str, Any]:  # noqa: ANN401 - parsed JSON
    """One stanza of ``pgbackrest --output=json info`` (parsed, or its text): status, backups, ages at ``now``."""
    if isinstance(info, (str, bytes)):
        try:
            info = json.loads(info)
        except ValueError as exc:
            raise AnsibleFilterError(f"pgbackrest_summary: the info output is not JSON ({exc})") from exc
    when = _number("pgbackrest_summary", "now", now)
    try:
        summary: dict[str, Any] = pgbackrest.summarize_info(info, str(stanza), when)
    except (pgbackrest.PgBackRestError, AttributeError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"pgbackrest_summary: {exc}") from exc
    return summary


def pgbackrest_age_problems(
    summary: Any,  # noqa: ANN401 - a filter's input
    max_full_age_hours: Any,  # noqa: ANN401 - any inventory value
    max_diff_age_hours: Any,  # noqa: ANN401
) -> list[str]:
    """One sentence per backup (full, differential) older than its limit in hours, or missing."""
    limits = []
    for name, hours in (("max_full_age_hours", max_full_age_hours), ("max_diff_age_hours", max_diff_age_hours)):
        number = _number("pgbackrest_age_problems", name, hours)
        if number <= 0:
            raise AnsibleFilterError(f"pgbackrest_age_problems: {name} must be more than 0 hours (got {hours!r})")
        limits.append(round(number * HOUR))
    try:
        problems: list[str] = pgbackrest.age_problems(
            _summary("pgbackrest_age_problems", summary), limits[0], limits[1]
        )
    except (AttributeError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(
            f"pgbackrest_age_problems: the summary is not one pgbackrest_summary made ({exc})"
        ) from exc
    return problems


def pgbackrest_archive_lag(current_lsn: Any, newest_archived: Any = None) -> int:  # noqa: ANN401 - any input
    """Bytes the leader has written past the end of the newest archived WAL segment."""
    try:
        lag: int = pgbackrest.archive_lag_bytes(
            str(current_lsn), None if newest_archived is None else str(newest_archived)
        )
    except pgbackrest.PgBackRestError as exc:
        raise AnsibleFilterError(f"pgbackrest_archive_lag: {exc}") from exc
    return lag


def pgbackrest_restore_target(
    summary: Any,  # noqa: ANN401 - a filter's input
    kind: Any,  # noqa: ANN401 - any inventory value
    value: Any,  # noqa: ANN401
    now: Any,  # noqa: ANN401
    backup_set: Any = None,  # noqa: ANN401
) -> dict[str, Any]:
    """A restore target (and backup set) checked against the summary's backups and the clock."""
    when = _number("pgbackrest_restore_target", "now", now)
    checked = _summary("pgbackrest_restore_target", summary)
    try:
        target: dict[str, Any] = pgbackrest.restore_target(
            "" if kind is None else str(kind),
            None if value is None else str(value),
            checked,
            when,
            backup_set=None if backup_set is None else str(backup_set),
        )
    except (pgbackrest.PgBackRestError, AttributeError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"pgbackrest_restore_target: {exc}") from exc
    return target


def backup_inventory_problems(
    backup_hosts: Any,  # noqa: ANN401 - any inventory value
    postgres_hosts: Any,  # noqa: ANN401
    cipher_pass: Any = None,  # noqa: ANN401
) -> list[str]:
    """What is wrong with the backup group and the repository's passphrase (never the passphrase itself)."""
    backup = _hosts("backup_inventory_problems", "the backup hosts", backup_hosts)
    postgres = _hosts("backup_inventory_problems", "the postgres hosts", postgres_hosts)
    if isinstance(cipher_pass, (bool, Mapping)) or (
        isinstance(cipher_pass, Iterable) and not isinstance(cipher_pass, str)
    ):
        # Its type only: the value may be the secret.
        raise AnsibleFilterError(
            f"backup_inventory_problems: the passphrase must be a string (got a {type(cipher_pass).__name__})"
        )
    phrase = None if cipher_pass is None else str(cipher_pass)
    problems: list[str] = pgbackrest.backup_inventory_problems(backup, postgres, phrase)
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "pgbackrest_summary": pgbackrest_summary,
            "pgbackrest_age_problems": pgbackrest_age_problems,
            "pgbackrest_archive_lag": pgbackrest_archive_lag,
            "pgbackrest_restore_target": pgbackrest_restore_target,
            "backup_inventory_problems": backup_inventory_problems,
        }
