"""Backups' decisions as plugins, without a cluster (issue 19): module_utils/pgbackrest.py and the
filters of plugins/filter/backups.py that wrap it.

The info fixture (tests/data/pgbackrest_info_2.45.json) is the real ``pgbackrest --output=json info``
of Debian 12's pgBackRest 2.45: an encrypted repository (aes-256-cbc), one full and one differential
backup of a PostgreSQL 15 cluster, WAL archived from segment 1 to 5.
"""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from conftest import REPO, collection_import, run_task

pgbr = collection_import("plugins.module_utils.pgbackrest")
filters = collection_import("plugins.filter.backups")

INFO = json.loads((Path(__file__).parent / "data" / "pgbackrest_info_2.45.json").read_text())
FULL_STOP = INFO[0]["backup"][0]["timestamp"]["stop"]
DIFF_STOP = INFO[0]["backup"][1]["timestamp"]["stop"]
FULL = INFO[0]["backup"][0]["label"]  # 20261206-024050F: ends at LSN 0/3000050
DIFF = INFO[0]["backup"][1]["label"]  # 20261206-024050F_20261206-024054D: ends at LSN 0/5000100
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
    assert "(pgbackrest_max_diff_age_hours)" in problems[0]
    assert "more than 26 h" in problems[0]


def test_a_full_backup_past_its_limit_names_pgbackrest_max_full_age_hours() -> None:
    late = summary(now=DIFF_STOP + 9 * 24 * HOUR)
    problems = pgbr.age_problems(late, 8 * 24 * HOUR, 30 * 24 * HOUR)
    assert len(problems) == 1
    assert problems[0].startswith(f"The newest full backup ({FULL}) is 216.0 h old")
    assert "more than 192 h (pgbackrest_max_full_age_hours)" in problems[0]


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
    assert "(pgbackrest_retention_days)" in early["problems"][0]
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


def test_restore_problems_name_the_restore_playbook_variables() -> None:
    assert "(pg_restore_target_type)" in pgbr.restore_target("xid", "42", summary(), 0)["problems"][0]
    assert "(pg_restore_target)" in pgbr.restore_target("lsn", "", summary(), 0)["problems"][0]
    assert "leave pg_restore_target empty" in pgbr.restore_target("latest", "0/5", summary(), 0)["problems"][0]


# ---------------------------------------------------------------------------------------- restore: backup set
def test_a_backup_set_in_the_repository_is_passed_on_as_set() -> None:
    latest = pgbr.restore_target("latest", None, summary(), DIFF_STOP + 60, backup_set=FULL)
    assert latest == {
        "options": ["--type=default", f"--set={FULL}"],
        "describe": f"the latest archived WAL, from backup set {FULL}",
        "problems": [],
    }
    timed = pgbr.restore_target("time", utc(DIFF_STOP + 1), summary(), DIFF_STOP + 60, backup_set=f" {DIFF} ")
    assert timed["problems"] == []
    assert timed["options"][0] == "--type=time"
    assert timed["options"][-1] == f"--set={DIFF}"
    named = pgbr.restore_target("name", "before-migration-42", summary(), DIFF_STOP + 60, backup_set=DIFF)
    assert named["options"] == [
        "--type=name",
        "--target=before-migration-42",
        "--target-action=promote",
        f"--set={DIFF}",
    ]


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_no_backup_set_lets_pgbackrest_choose(empty: str | None) -> None:
    t = pgbr.restore_target("time", utc(DIFF_STOP + 1), summary(), DIFF_STOP + 60, backup_set=empty)
    assert t["problems"] == []
    assert not [o for o in t["options"] if o.startswith("--set")]
    assert "backup set" not in t["describe"]


def test_a_backup_set_not_in_the_repository_is_refused_naming_pg_restore_set_and_the_labels() -> None:
    t = pgbr.restore_target("time", utc(DIFF_STOP + 1), summary(), DIFF_STOP + 60, backup_set="20261205-010000F")
    assert t["problems"] == [
        f"Backup set '20261205-010000F' is not in the repository (pg_restore_set; its backups: {FULL}, {DIFF}): "
        "choose one of them, or leave pg_restore_set empty to let pgBackRest choose."
    ]
    assert not [o for o in t["options"] if o.startswith("--set")]
    empty = summary([{"name": "demo", "status": {"code": 2, "message": "no valid backups"}}])
    problems = pgbr.restore_target("latest", None, empty, 0, backup_set=FULL)["problems"]
    assert len(problems) == 2
    assert "(pg_restore_set; its backups: none)" in problems[1]


def test_a_time_before_the_chosen_set_ended_is_refused_though_after_the_oldest_backup() -> None:
    when = FULL_STOP + 1  # after the full backup ended, before the differential did
    assert pgbr.restore_target("time", utc(when), summary(), DIFF_STOP + 60, backup_set=FULL)["problems"] == []
    t = pgbr.restore_target("time", utc(when), summary(), DIFF_STOP + 60, backup_set=DIFF)
    ended = dt.datetime.fromtimestamp(DIFF_STOP, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    assert t["problems"] == [
        f"Restore time {utc(when)} is before backup set {DIFF} ended ({ended}): choose a later time, or an older "
        "set (pg_restore_set), or leave pg_restore_set empty to let pgBackRest choose."
    ]
    # The moment the set ended is the earliest it can reach.
    assert pgbr.restore_target("time", utc(DIFF_STOP), summary(), DIFF_STOP + 60, backup_set=DIFF)["problems"] == []
    # Before the oldest backup too: one problem, the set's.
    early = pgbr.restore_target("time", utc(FULL_STOP - 10), summary(), DIFF_STOP + 60, backup_set=FULL)
    assert len(early["problems"]) == 1
    assert f"before backup set {FULL} ended" in early["problems"][0]


def test_an_lsn_before_the_chosen_set_ended_is_refused() -> None:
    assert pgbr.restore_target("lsn", "0/4000000", summary(), 0, backup_set=FULL)["problems"] == []
    t = pgbr.restore_target("lsn", "0/4000000", summary(), 0, backup_set=DIFF)
    assert t["problems"] == [
        f"Restore LSN 0/4000000 is before backup set {DIFF} ended (LSN 0/5000100): choose a later LSN, or an older "
        "set (pg_restore_set), or leave pg_restore_set empty to let pgBackRest choose."
    ]


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
        (["b1"], ["pg1"], None, "vault_pgbackrest_cipher_pass is missing or a placeholder"),
        (["b1"], ["pg1"], "changeme", "missing or a placeholder"),
        (["b1"], ["pg1"], "vault-placeholder-backup-cipher", "missing or a placeholder"),
        # The example vault's placeholder: long enough, but the placeholder_secret test's rule refuses it.
        (
            ["b1"],
            ["pg1"],
            "CHANGE_ME_pgbackrest_cipher_pass",
            "vault_pgbackrest_cipher_pass is missing or a placeholder",
        ),
        (["b1"], ["pg1"], "short-pass", "vault_pgbackrest_cipher_pass is 10 characters: use 20 or more"),
    ],
)
def test_a_bad_backup_inventory_is_refused_with_the_fix(
    backup: list[str], postgres: list[str], phrase: str | None, expected: str
) -> None:
    problems = pgbr.backup_inventory_problems(backup, postgres, phrase)
    assert len(problems) == 1, problems
    assert expected in problems[0]


# ---------------------------------------------------------------------------------------- filters
FILTER_NAMES = {
    "pgbackrest_summary",
    "pgbackrest_age_problems",
    "pgbackrest_archive_lag",
    "pgbackrest_restore_target",
    "backup_inventory_problems",
}


def test_every_filter_is_documented_under_its_name_with_its_arguments() -> None:
    found = filters.FilterModule().filters()
    assert set(found) == FILTER_NAMES
    for name, function in found.items():
        doc = yaml.safe_load((REPO / "plugins" / "filter" / f"{name}.yml").read_text())["DOCUMENTATION"]
        assert doc["name"] == name
        arguments = ["_input", *list(inspect.signature(function).parameters)[1:]]
        assert [a.strip() for a in doc["positional"].split(",")] == arguments, name
        assert list(doc["options"]) == arguments, name


def test_pgbackrest_summary_reads_the_parsed_output_or_its_text_at_a_numeric_time() -> None:
    assert filters.pgbackrest_summary(INFO, "demo", DIFF_STOP + 60) == summary()
    # A command's stdout, and the epoch as text (ansible_date_time.epoch is text).
    assert filters.pgbackrest_summary(json.dumps(INFO), "demo", str(DIFF_STOP + 60)) == summary()


@pytest.mark.parametrize(
    ("info", "stanza", "now", "named"),
    [
        ("{not json", "demo", 0, "pgbackrest_summary: the info output is not JSON"),
        (INFO, "tutormax", 0, r"pgbackrest_summary: pgbackrest info: no stanza 'tutormax' \(stanzas: demo\)"),
        ({"name": "demo"}, "demo", 0, "expected a list of stanzas"),
        ([{"name": "demo", "backup": ["not a backup"]}], "demo", 0, "pgbackrest_summary: "),
        (INFO, "demo", "yesterday", "pgbackrest_summary: now must be a number"),
        (INFO, "demo", True, "pgbackrest_summary: now must be a number"),
    ],
)
def test_pgbackrest_summary_turns_what_it_cannot_read_into_a_filter_error(
    info: Any,  # noqa: ANN401 - any input
    stanza: str,
    now: Any,  # noqa: ANN401
    named: str,
) -> None:
    with pytest.raises(AnsibleFilterError, match=named):
        filters.pgbackrest_summary(info, stanza, now)


def test_pgbackrest_age_problems_takes_its_limits_in_hours() -> None:
    s = summary(now=DIFF_STOP + 2 * HOUR)
    assert filters.pgbackrest_age_problems(s, 192, 26) == []
    assert filters.pgbackrest_age_problems(s, "192", "26") == []  # -e passes text
    assert filters.pgbackrest_age_problems(s, 192, 1.5) == [
        f"The newest differential (or full) backup ({DIFF}) is 2.0 h old, more than 1.5 h "
        "(pgbackrest_max_diff_age_hours): look at the backup timer's journal on the backup host."
    ]


@pytest.mark.parametrize(
    ("summary_", "full", "diff", "named"),
    [
        (None, 0, 26, "max_full_age_hours must be more than 0 hours"),
        (None, 192, "a day", "max_diff_age_hours must be a number"),
        (None, True, 26, "max_full_age_hours must be a number"),
        (None, 192, float("inf"), "max_diff_age_hours must be a finite number"),
        ({"ok": True}, 192, 26, "expects the output of tutormax.cluster.pgbackrest_summary"),
        ("ok", 192, 26, "expects the output of tutormax.cluster.pgbackrest_summary"),
    ],
)
def test_pgbackrest_age_problems_refuses_a_bad_limit_or_summary(
    summary_: Any,  # noqa: ANN401 - any input
    full: Any,  # noqa: ANN401
    diff: Any,  # noqa: ANN401
    named: str,
) -> None:
    with pytest.raises(AnsibleFilterError, match=f"pgbackrest_age_problems: {named}"):
        filters.pgbackrest_age_problems(summary() if summary_ is None else summary_, full, diff)


def test_pgbackrest_archive_lag_counts_bytes_and_refuses_what_is_not_an_lsn_or_a_segment() -> None:
    assert filters.pgbackrest_archive_lag("0/6000090", "000000010000000000000005") == 0x90
    assert filters.pgbackrest_archive_lag("0/6000090") == 0x6000090
    assert filters.pgbackrest_archive_lag("0/6000090", "") == 0x6000090
    with pytest.raises(AnsibleFilterError, match="pgbackrest_archive_lag: not an LSN"):
        filters.pgbackrest_archive_lag("6000090", "000000010000000000000005")
    with pytest.raises(AnsibleFilterError, match="pgbackrest_archive_lag: not a WAL segment"):
        filters.pgbackrest_archive_lag("0/6000090", "00000001000000000000005")


def test_pgbackrest_restore_target_passes_the_kind_the_value_and_the_set_on() -> None:
    s = summary()
    t = filters.pgbackrest_restore_target(s, "time", utc(DIFF_STOP + 1), str(DIFF_STOP + 60), DIFF)
    assert t == pgbr.restore_target("time", utc(DIFF_STOP + 1), s, DIFF_STOP + 60, backup_set=DIFF)
    assert t["problems"] == []
    assert t["options"][-1] == f"--set={DIFF}"
    assert filters.pgbackrest_restore_target(s, "latest", "", DIFF_STOP + 60)["options"] == ["--type=default"]
    assert filters.pgbackrest_restore_target(s, None, None, DIFF_STOP + 60)["options"] == ["--type=default"]
    assert "(pg_restore_set;" in filters.pgbackrest_restore_target(s, "latest", "", DIFF_STOP, "nope")["problems"][0]
    with pytest.raises(AnsibleFilterError, match="pgbackrest_restore_target: expects the output of"):
        filters.pgbackrest_restore_target(INFO, "latest", "", DIFF_STOP)
    with pytest.raises(AnsibleFilterError, match="pgbackrest_restore_target: now must be a number"):
        filters.pgbackrest_restore_target(s, "latest", "", None)


def test_backup_inventory_problems_filter_checks_the_group_and_never_shows_the_passphrase() -> None:
    assert filters.backup_inventory_problems(["b1"], ["pg1", "pg2"], GOOD_PASS) == []
    assert filters.backup_inventory_problems(None, ["pg1"], GOOD_PASS)[0].startswith("No host in the backup group")
    assert filters.backup_inventory_problems(["b1"], None, None)[0].startswith(
        "vault_pgbackrest_cipher_pass is missing"
    )
    short = GOOD_PASS[:19]
    assert filters.backup_inventory_problems(["b1"], ["pg1"], short) == [
        "vault_pgbackrest_cipher_pass is 19 characters: use 20 or more (e.g. openssl rand -base64 48)."
    ]


@pytest.mark.parametrize(
    ("backup", "postgres", "phrase", "named"),
    [
        ("b1", ["pg1"], GOOD_PASS, "the backup hosts must be a list of host names"),
        (["b1"], {"pg1": {}}, GOOD_PASS, "the postgres hosts must be a list of host names"),
        (["b1"], ["pg1"], {"phrase": GOOD_PASS}, r"the passphrase must be a string \(got a dict\)"),
        (["b1"], ["pg1"], [GOOD_PASS], r"the passphrase must be a string \(got a list\)"),
    ],
)
def test_backup_inventory_problems_filter_refuses_input_of_the_wrong_shape(
    backup: Any,  # noqa: ANN401 - any input
    postgres: Any,  # noqa: ANN401
    phrase: Any,  # noqa: ANN401
    named: str,
) -> None:
    with pytest.raises(AnsibleFilterError, match=f"backup_inventory_problems: {named}") as raised:
        filters.backup_inventory_problems(backup, postgres, phrase)
    assert GOOD_PASS not in str(raised.value)


def test_the_filters_run_in_a_playbook_by_their_fqcn(tmp_path: Path) -> None:
    task = {
        "ansible.builtin.debug": {
            "msg": "{{ {'count': s.count,"
            " 'ages': s | tutormax.cluster.pgbackrest_age_problems(192, 26),"
            " 'lag': '0/6000090' | tutormax.cluster.pgbackrest_archive_lag(s.archive.max),"
            " 'restore': s | tutormax.cluster.pgbackrest_restore_target('time', target_time, at, backup_set),"
            " 'inventory': ['pg2'] | tutormax.cluster.backup_inventory_problems(['pg1', 'pg2'], phrase)} }}"
        },
        "vars": {
            "info": INFO,
            "at": DIFF_STOP + 60,
            "s": "{{ info | tutormax.cluster.pgbackrest_summary('demo', at) }}",
            "target_time": utc(DIFF_STOP + 1),
            "backup_set": DIFF,
            "phrase": GOOD_PASS,
        },
    }
    proc, result = run_task(tmp_path, task)
    assert proc.returncode == 0, proc.stdout[-3000:]
    msg = result["msg"]
    assert msg["count"] == 2
    assert msg["ages"] == []
    assert msg["lag"] == 0x90
    assert msg["restore"]["problems"] == []
    assert msg["restore"]["options"][-1] == f"--set={DIFF}"
    assert msg["inventory"][0].startswith("pg2 is in both backup and postgres")
