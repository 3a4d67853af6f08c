"""Backups' decisions as plugins, without a cluster (issue 19): module_utils/pgbackrest.py.

The info fixture (tests/data/pgbackrest_info_2.45.json) is the real ``pgbackrest --output=json info``
of Debian 12's pgBackRest 2.45: an encrypted repository (aes-256-cbc), one full and one differential
backup of a PostgreSQL 15 cluster, WAL archived from segment 1 to 5.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import collection_import

pgbr = collection_import("plugins.module_utils.pgbackrest")

INFO = json.loads((Path(__file__).parent / "data" / "pgbackrest_info_2.45.json").read_text())
FULL_STOP = INFO[0]["backup"][0]["timestamp"]["stop"]
DIFF_STOP = INFO[0]["backup"][1]["timestamp"]["stop"]
HOUR = 3600


def summary(info: Any = None, now: float | None = None) -> dict[str, Any]:  # noqa: ANN401 - parsed JSON
    result: dict[str, Any] = pgbr.summarize_info(
        INFO if info is None else info, "demo", DIFF_STOP + 60 if now is None else now
    )
    return result


def utc(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()


# ---------------------------------------------------------------------------------------- info
def test_the_info_of_2_45_reads_as_status_backups_ages_and_the_archive_range() -> None:
    s = summary()
    assert s["ok"] is True
    assert s["status"] == "ok"
    assert s["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in s["backups"]] == ["full", "diff"]
    assert s["count"] == 2
    assert s["failed"] == 0
    assert s["last_full"]["label"] == "20261206-024050F"
    assert s["last_full"]["age_s"] == DIFF_STOP + 60 - FULL_STOP
    assert s["last_diff"]["label"].endswith("D")
    assert s["last_diff"]["age_s"] == 60
    assert s["oldest"]["label"] == "20261206-024050F"
    assert s["archive"] == {"min": "000000010000000000000001", "max": "000000010000000000000005"}
    assert s["repo_backup_bytes"] == 3069184 + 205040  # each backup's delta in the repository


def test_a_full_newer_than_every_differential_counts_as_the_newest_differential() -> None:
    info = copy.deepcopy(INFO)
    newer_full = copy.deepcopy(info[0]["backup"][0])
    newer_full["label"] = "20261207-010000F"
    newer_full["timestamp"] = {"start": DIFF_STOP + 100, "stop": DIFF_STOP + 200}
    info[0]["backup"].append(newer_full)
    s = summary(info, now=DIFF_STOP + 300)
    assert s["last_diff"]["label"] == "20261207-010000F"
    assert s["last_diff"]["age_s"] == 100


def test_a_backup_in_error_is_not_a_good_one() -> None:
    info = copy.deepcopy(INFO)
    info[0]["backup"][1]["error"] = True
    s = summary(info)
    assert s["failed"] == 1
    assert s["last_diff"]["label"] == "20261206-024050F"


def test_an_unknown_stanza_or_output_is_an_error_that_names_what_there_is() -> None:
    with pytest.raises(pgbr.PgBackRestError, match=r"no stanza 'tutormax' \(stanzas: demo\)"):
        pgbr.summarize_info(INFO, "tutormax", 0)
    with pytest.raises(pgbr.PgBackRestError, match="expected a list"):
        pgbr.summarize_info({"name": "demo"}, "demo", 0)


def test_an_empty_stanza_has_no_backup_and_the_age_check_says_what_to_run() -> None:
    info = [{"name": "demo", "status": {"code": 2, "message": "no valid backups"}, "backup": [], "archive": []}]
    s = summary(info)
    assert s["ok"] is False
    assert s["last_full"] is None
    assert s["oldest"] is None
    problems = pgbr.age_problems(s, 8 * 24 * HOUR, 26 * HOUR)
    assert problems[0] == "Stanza demo: pgBackRest reports 'no valid backups'."
    assert "No good full backup" in problems[1]
    assert "playbooks/pg_backup.yml" in problems[1]


def test_ages_within_their_limits_pass_and_past_them_fail_naming_the_variable() -> None:
    s = summary(now=DIFF_STOP + 2 * HOUR)
    assert pgbr.age_problems(s, 8 * 24 * HOUR, 26 * HOUR) == []
    late = summary(now=FULL_STOP + 30 * HOUR)
    problems = pgbr.age_problems(late, 8 * 24 * HOUR, 26 * HOUR)
    assert len(problems) == 1
    assert "differential (or full)" in problems[0]
    assert "backup_max_diff_age_hours" in problems[0]
    assert "more than 26 h" in problems[0]


# ---------------------------------------------------------------------------------------- WAL
@pytest.mark.parametrize(
    ("segment", "end"),
    [
        ("000000010000000000000001", 0x2000000),
        ("000000010000000000000005", 0x6000000),
        ("0000000200000001000000FF", (1 << 32) + 0x100000000),  # the last segment of log 1 ends log 2's start
    ],
)
def test_a_wal_segment_ends_where_the_next_one_starts(segment: str, end: int) -> None:
    assert pgbr.wal_segment_end(segment) == end


def test_the_archive_lag_is_what_the_leader_wrote_past_the_newest_archived_segment() -> None:
    # The sample's leader was at 0/6000090 with segment 5 archived: 0x90 bytes into segment 6.
    assert pgbr.archive_lag_bytes("0/6000090", "000000010000000000000005") == 0x90
    assert pgbr.archive_lag_bytes("0/5FFFFFF", "000000010000000000000005") == 0
    assert pgbr.archive_lag_bytes("0/6000090", None) == 0x6000090
    with pytest.raises(pgbr.PgBackRestError, match="not an LSN"):
        pgbr.archive_lag_bytes("6000090", "000000010000000000000005")
    with pytest.raises(pgbr.PgBackRestError, match="not a WAL segment"):
        pgbr.archive_lag_bytes("0/6000090", "00000001000000000000005")


# ---------------------------------------------------------------------------------------- restore
def test_latest_is_the_default_restore_and_takes_no_value() -> None:
    t = pgbr.restore_target("latest", None, summary(), DIFF_STOP + 60)
    assert t == {"options": ["--type=default"], "describe": "the latest archived WAL", "problems": []}
    assert pgbr.restore_target("latest", "0/5", summary(), DIFF_STOP + 60)["problems"]


def test_a_time_between_the_oldest_backup_and_now_is_a_utc_target_that_promotes() -> None:
    when = FULL_STOP + 1
    t = pgbr.restore_target("time", utc(when), summary(), DIFF_STOP + 60)
    assert t["problems"] == []
    stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert t["options"] == ["--type=time", f"--target={stamp}.000000+00", "--target-action=promote"]
    # PostgreSQL's own way of writing it (+00) and another time zone name the same instant.
    plus00 = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    assert pgbr.restore_target("time", plus00, summary(), DIFF_STOP + 60)["options"] == t["options"]
    cet = dt.datetime.fromtimestamp(when, dt.timezone(dt.timedelta(hours=1))).isoformat()
    assert pgbr.restore_target("time", cet, summary(), DIFF_STOP + 60)["options"] == t["options"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-06 02:40:00", "not an ISO 8601 time with a time zone"),
        ("yesterday", "not an ISO 8601 time with a time zone"),
    ],
)
def test_a_time_without_a_zone_or_not_a_time_is_refused(value: str, expected: str) -> None:
    t = pgbr.restore_target("time", value, summary(), DIFF_STOP + 60)
    assert t["options"] == []
    assert expected in t["problems"][0]


def test_a_time_before_the_oldest_backup_or_in_the_future_is_refused_naming_the_fix() -> None:
    early = pgbr.restore_target("time", utc(FULL_STOP - 10), summary(), DIFF_STOP + 60)
    assert len(early["problems"]) == 1
    assert "before the oldest backup ended (20261206-024050F" in early["problems"][0]
    assert "postgresql_backup_retention_days" in early["problems"][0]
    future = pgbr.restore_target("time", utc(DIFF_STOP + 3600), summary(), DIFF_STOP + 60)
    assert future["problems"] == [f"Restore time {utc(DIFF_STOP + 3600)} is in the future: choose a time before now."]


def test_an_lsn_target_is_checked_for_shape_and_against_the_oldest_backup() -> None:
    ok = pgbr.restore_target("lsn", "0/5000100", summary(), DIFF_STOP + 60)
    assert ok["problems"] == []
    assert ok["options"] == ["--type=lsn", "--target=0/5000100", "--target-action=promote"]
    assert "before the oldest backup ended" in pgbr.restore_target("lsn", "0/2000000", summary(), 0)["problems"][0]
    assert "not an LSN" in pgbr.restore_target("lsn", "5000100", summary(), 0)["problems"][0]


def test_a_named_restore_point_is_passed_on_and_an_impossible_name_refused() -> None:
    t = pgbr.restore_target("name", "before-migration-42", summary(), DIFF_STOP + 60)
    assert t["problems"] == []
    assert t["options"][:2] == ["--type=name", "--target=before-migration-42"]
    assert "longer than 63 bytes" in pgbr.restore_target("name", "x" * 64, summary(), 0)["problems"][0]


def test_an_unknown_kind_a_missing_value_or_no_backup_is_refused() -> None:
    assert "use latest, time, lsn or name" in pgbr.restore_target("xid", "42", summary(), 0)["problems"][0]
    assert "needs a target" in pgbr.restore_target("time", " ", summary(), 0)["problems"][0]
    empty = summary([{"name": "demo", "status": {"code": 2, "message": "no valid backups"}}])
    assert "no good backup to restore" in pgbr.restore_target("latest", None, empty, 0)["problems"][0]


# ---------------------------------------------------------------------------------------- inventory
GOOD_PASS = "k9Vt2r8hQwZ3nL5pXs7mB1cD4fG6jH0a"  # noqa: S105 - a test's own


def test_one_backup_host_apart_from_postgres_and_a_real_passphrase_pass() -> None:
    assert pgbr.backup_inventory_problems(["backup1"], ["pg1", "pg2"], GOOD_PASS) == []


@pytest.mark.parametrize(
    ("backup", "postgres", "phrase", "expected"),
    [
        ([], ["pg1"], GOOD_PASS, "No host in the backup group: add one"),
        (["pg2"], ["pg1", "pg2"], GOOD_PASS, "pg2 is in both backup and postgres"),
        (["b1", "b2"], ["pg1"], GOOD_PASS, "the repository lives on one; keep one"),
        (["b1"], ["pg1"], None, "postgresql_backup_cipher_pass is missing or a placeholder"),
        (["b1"], ["pg1"], "changeme", "missing or a placeholder"),
        (["b1"], ["pg1"], "vault-placeholder-backup-cipher", "missing or a placeholder"),
        (["b1"], ["pg1"], "short-pass", "is 10 characters: use 20 or more"),
    ],
)
def test_a_bad_backup_inventory_is_refused_with_the_fix(
    backup: list[str], postgres: list[str], phrase: str | None, expected: str
) -> None:
    problems = pgbr.backup_inventory_problems(backup, postgres, phrase)
    assert len(problems) == 1, problems
    assert expected in problems[0]
