"""What the celery role leaves on the Celery hosts, and what the side effect's tasks and drill showed.

The Celery hosts: cluster-worker1 and cluster-worker2 (each with beat), and cluster-api3, which also runs the
API. side_effect_celery.yml seeded tutors and sent the churn training from the first API host, then
stopped the worker that ran an export while that export waited on a table lock (longer than the
app's default statement timeout), and saved what it saw in side_effect_celery.json (ephemeral
directory). An export through the load balancer with no lock, and every worker answering a ping
by its name (playbooks/verify.yml), are test_cluster.py's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
WORKER_HOSTS = sorted(RUNNER.get_hosts("celery_worker"))
BEAT_HOSTS = RUNNER.get_hosts("celery_beat")
testinfra_hosts = sorted(set(WORKER_HOSTS + BEAT_HOSTS))

SIDE_EFFECT = json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "side_effect_celery.json").read_text())
TASKS, DRILL = SIDE_EFFECT["tasks"], SIDE_EFFECT["drill"]


def unit_props(host, unit: str, *names: str) -> dict[str, str]:
    flags = " ".join(f"-p {n}" for n in names)
    return dict(line.split("=", 1) for line in host.check_output(f"systemctl show {flags} {unit}").splitlines())


def test_the_worker_instance_runs_as_tutormax_with_its_concurrency(host) -> None:
    assert host.service("tutormax-worker@1").is_running
    assert host.service("tutormax-worker@1").is_enabled
    main_pid = host.check_output("systemctl show -P MainPID tutormax-worker@1")
    users = host.check_output(f"ps -o user= -p {main_pid} --ppid {main_pid}").split()
    # The main process and celery_worker_concurrency (2) pool processes.
    assert users == ["tutormax"] * 3


def test_beat_runs_on_every_beat_host_and_no_other(host) -> None:
    beat = host.service("tutormax-beat")
    if host.backend.get_hostname() in BEAT_HOSTS:
        assert beat.is_running
        assert beat.is_enabled
    else:
        assert not beat.is_running
        assert not beat.is_enabled


def test_a_stop_waits_longer_than_the_longest_task_may_run(host) -> None:
    longest = int(
        host.check_output(
            "/opt/tutormax/current/bin/python -c "
            "'from tutormax.data.taskqueue import MAX_HARD_TIME_LIMIT as m; print(m)'"
        )
    )
    props = unit_props(host, "tutormax-worker@1", "KillMode", "KillSignal", "TimeoutStopUSec")
    assert props["KillMode"] == "mixed"  # SIGTERM to the main process only: a warm shutdown
    assert props["KillSignal"] == "15"
    minutes, seconds = re.fullmatch(r"(?:(\d+)min ?)?(?:(\d+)s)?", props["TimeoutStopUSec"]).groups()
    assert int(minutes or 0) * 60 + int(seconds or 0) > longest


def test_the_units_restart_on_any_exit_systemd_did_not_ask_for(host) -> None:
    # Celery ends with status 0 on an error it deems unrecoverable: on-failure would leave it dead.
    units = ["tutormax-worker@1"] + (["tutormax-beat"] if host.backend.get_hostname() in BEAT_HOSTS else [])
    for unit in units:
        props = unit_props(host, unit, "Restart", "RestartPreventExitStatus")
        assert props["Restart"] == "always", unit
        assert props["RestartPreventExitStatus"] == "2", unit  # a configuration error: a restart cannot fix it


def test_the_worker_sandbox_rates_1_1_or_better(host) -> None:
    report = host.check_output("systemd-analyze security --no-pager tutormax-worker@1.service")
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", report).group(1))
    assert exposure <= 1.1, report


def test_the_churn_model_trains_with_scikit_learn_inside_the_worker_sandbox() -> None:
    churn = TASKS["churn"]
    assert "'status': 'trained'" in churn, churn
    assert f"'samples': {float(len(TASKS['seed']['tutors']))}" in churn, churn


def test_stopping_a_worker_lets_its_running_task_finish_first() -> None:
    assert DRILL["running_before_stop"]["status"] == "running"
    # Five seconds after the stop the worker was still stopping, its export still running.
    assert DRILL["while_stopping"]["ActiveState"] == "deactivating", DRILL["while_stopping"]
    assert DRILL["export_while_stopping"]["status"] == "running"
    # It stopped only after the lock was released and the export finished, and cleanly.
    assert DRILL["stop_sent_at"] < DRILL["lock_released_at"] <= DRILL["stopped_at"]
    assert DRILL["stopped"]["Result"] == "success", DRILL["stopped"]
    after = DRILL["export_after"]
    assert after["status"] == "done", after
    # Every tutor (the side effect's, on a cluster that had none), each a row of the download.
    assert after["csv_rows"] == after["row_count"] == len(TASKS["seed"]["tutors"])
    finished = dt.datetime.fromisoformat(after["finished_at"]).timestamp()
    assert DRILL["lock_released_at"] <= finished <= DRILL["stopped_at"]
    # The export waited on the lock longer than the app's default statement timeout (15 s) and still
    # succeeded: the Celery hosts' raised timeout (host_vars) reached the worker that ran it.
    created = dt.datetime.fromisoformat(after["created_at"]).timestamp()
    assert DRILL["lock_released_at"] - DRILL["requested_by"] >= 20
    assert finished - created > 15, (after["created_at"], after["finished_at"])
    log = "\n".join(DRILL["journal"])
    assert "Warm shutdown" in log, log


def test_the_stopped_worker_runs_again(host) -> None:
    if host.backend.get_hostname() == DRILL["host"]:
        assert host.service(DRILL["unit"].removesuffix(".service")).is_running
