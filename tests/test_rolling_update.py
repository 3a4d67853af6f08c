"""rolling_update.yml and its tooling.

Without a cluster: the playbook refuses a missing version or a bad setting before it reaches any
host; the load generator counts every failure (non-2xx and connection errors alike), refuses
non-loopback targets and plots the events; the harness reads the workers' journals. The plugins
the playbook runs have their own tests (test_release_plugins.py, test_rollout_plan.py,
test_nginx_upstreams.py). The whole rolling update under load needs a cluster: `make
test-rolling` (benchmarks/rolling_update.py).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, JsonHandler, load_module, serving

loadgen = load_module("loadgen", REPO / "benchmarks" / "loadgen.py")


# ------------------------------------------------------------------------------------ the playbook
def _inventory(tmp_path: Path) -> Path:
    """Every group of the contract, hosts that refuse connections, secrets that pass the preflight."""
    secret = "s3cret-value-long-enough-for-the-test"  # noqa: S105 - a test value, nothing uses it
    host = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"}
    inventory = {
        "all": {
            "vars": {
                f"vault_{name}": secret
                for name in (
                    "postgresql_app_password",
                    "postgresql_replication_password",
                    "postgresql_rewind_password",
                    "patroni_restapi_password",
                    "redis_password",
                    "redis_app_password",
                    "redis_sentinel_password",
                    "redis_monitor_password",
                    "pgbackrest_cipher_pass",
                )
            },
            "children": {
                group: {"hosts": {f"{group}-1": host}}
                for group in ("lb", "api", "postgres_primary", "celery_worker", "celery_beat", "redis_master", "backup")
            }
            | {"redis_sentinel": {"hosts": {f"s{i}": host for i in range(3)}}}
            | {"etcd": {"hosts": {f"s{i}": host for i in range(3)}}},
        }
    }
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(inventory))
    return path


def _run_playbook(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", str(_inventory(tmp_path)), "rolling_update.yml", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="false", NO_COLOR="1"),
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ((), "tutormax_version"),
        (("-e", "tutormax_version=latest"), "tutormax_version"),
        (("-e", "tutormax_version=1.0.1", "-e", "rolling_update_serial=half"), "rolling_update_serial"),
        (("-e", "tutormax_version=1.0.1", "-e", "rolling_update_migrate=maybe"), "rolling_update_migrate"),
    ],
    ids=["no-version", "not-a-version", "serial-not-a-number", "migrate-not-a-choice"],
)
def test_playbook_refuses_bad_input_before_touching_a_host(tmp_path: Path, extra: tuple[str, ...], named: str) -> None:
    proc = _run_playbook(tmp_path, *extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert named in out
    assert "Nothing was changed" in out
    assert "UNREACHABLE" not in out, "the play went past the preflight"


def test_playbook_accepts_good_input_and_goes_on_to_the_hosts(tmp_path: Path) -> None:
    """The same inventory with valid input passes the preflight and fails only at the hosts."""
    proc = _run_playbook(tmp_path, "-e", "tutormax_version=1.0.1", "-e", '{"rolling_update_serial": [1, "50%"]}')
    assert proc.returncode != 0
    assert "UNREACHABLE" in proc.stdout, proc.stdout[-2000:]


# ------------------------------------------------------------------------------------ the load generator
class FakeApi(JsonHandler):
    """Enough of the TutorMax API for the load generator; /api/tutors/13 answers 502."""

    counter = 100
    instance_id = "fake1"

    def do_GET(self) -> None:
        if self.path.startswith("/api/tutors?"):
            self.send_json(200, {"items": [{"id": 13}, {"id": 14}]})
        elif self.path == "/api/tutors/13":
            self.send_json(502, {"detail": "bad gateway"})
        else:
            self.send_json(200, {"status": "healthy"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        FakeApi.counter += 1
        self.send_json(201, {"id": FakeApi.counter})


@pytest.fixture
def fake_api() -> Iterator[str]:
    with serving(FakeApi) as port:
        yield f"http://127.0.0.1:{port}"


def test_loadgen_refuses_targets_other_than_loopback() -> None:
    with pytest.raises(SystemExit, match="loopback"):
        loadgen.check_loopback("http://192.0.2.10:8080")
    loadgen.check_loopback("http://127.0.0.1:8080")
    loadgen.check_loopback("http://localhost:8080")


def test_loadgen_takes_an_address_on_the_projects_own_docker_networks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen, "project_networks", lambda: [ipaddress.ip_network("10.203.20.0/24")])
    loadgen.check_loopback("http://10.203.20.250")  # a scenario's floating address
    for elsewhere in ("http://10.203.21.5", "http://192.0.2.10:8080"):
        with pytest.raises(SystemExit, match="project's Docker networks"):
            loadgen.check_loopback(elsewhere)
    monkeypatch.setattr(loadgen, "project_networks", list)  # no Docker, or no network of ours
    with pytest.raises(SystemExit, match="loopback"):
        loadgen.check_loopback("http://10.203.20.250")


def test_loadgen_sends_health_checks_alone_without_reading_tutors_first(fake_api: str) -> None:
    result = loadgen.LoadGenerator(fake_api, 100, mix={"health": 1}).run(0.5)
    assert len(result.records) >= 40
    assert {r.kind for r in result.records} == {"health"}
    assert result.setup == {}


def test_loadgen_records_every_response_and_counts_non_2xx(fake_api: str) -> None:
    generator = loadgen.LoadGenerator(fake_api, 200, mix={"get_tutor": 1, "create_tutor": 1, "rate_session": 1})
    result = generator.run(1.5)
    summary = loadgen.summarize(result)
    overall = summary["overall"]
    assert 250 <= overall["requests"] <= 320, "open loop: about rate x duration requests"
    assert overall["non_2xx"] > 0
    assert overall["by_status"].get("502") == overall["non_2xx"]
    assert overall["failed"] == overall["non_2xx"] + overall["errors"]
    assert summary["by_instance"].get("fake1") == overall["requests"]
    assert overall["p99_ms"] is not None
    assert overall["p50_ms"] <= overall["p99_ms"]


def test_loadgen_counts_connection_errors() -> None:
    with serving(FakeApi) as port:
        generator = loadgen.LoadGenerator(f"http://127.0.0.1:{port}", 50, mix={"health": 1}, timeout=2)
        generator.start(2.5)
        time.sleep(1)
    time.sleep(1.5)  # the server is closed: connection refused from now on
    summary = loadgen.summarize(generator.stop())
    assert summary["overall"]["ok_2xx"] > 20
    assert summary["overall"]["errors"] > 20
    assert "ConnectError" in summary["overall"]["by_error"]
    assert summary["overall"]["failed"] == summary["overall"]["errors"]


def test_loadgen_spans_and_plot(tmp_path: Path) -> None:
    t0 = 1_000_000.0
    records = [
        loadgen.Record(t0 + i / 10, "health", "GET", 200, 5.0 + i % 7, "", f"api{i % 3 + 1}") for i in range(300)
    ]
    records.append(loadgen.Record(t0 + 12, "create_tutor", "POST", 0, 2.0, "ConnectError: refused"))
    result = loadgen.LoadResult(url="http://127.0.0.1:8080", rate=10, started=t0, stopped=t0 + 30, records=records)
    events = [
        {"t": t0 + 5, "host": "api1", "event": "drain"},
        {"t": t0 + 6, "host": "api1", "event": "drained", "detail": {"waited_s": 0.4}},
        {"t": t0 + 14, "host": "api1", "event": "returned"},
        {"t": t0 + 15, "host": "api2", "event": "drain"},
        {"t": t0 + 20, "host": "api2", "event": "failed"},
        {"t": t0 + 22, "host": "worker1", "event": "worker_stop"},
        {"t": t0 + 25, "host": "worker1", "event": "worker_back"},
    ]
    spans = loadgen.host_spans(events)
    assert [(s["host"], s["outcome"], s["seconds"]) for s in spans] == [
        ("api1", "returned", 9.0),
        ("api2", "failed", 5.0),
    ]
    summary = loadgen.summarize(result, [("before", t0, t0 + 5), ("during", t0 + 5, t0 + 25)])
    assert summary["overall"]["errors"] == 1
    assert summary["windows"]["during"]["errors"] == 1
    assert summary["windows"]["before"]["failed"] == 0
    png = tmp_path / "plot.png"
    loadgen.plot(result, events, png, "test", summary)
    assert png.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ on a cluster


# ------------------------------------------------------------------------------------ the harness
rolling = load_module("rolling_update_harness", REPO / "benchmarks" / "rolling_update.py")


def _journal(*entries: tuple[float, str, str]) -> str:
    """journalctl -o json lines: (time, unit the line is about, message); systemd's own lines have pid 1."""
    lines = []
    for at, unit, message in entries:
        entry: dict[str, str] = {"__REALTIME_TIMESTAMP": str(int(at * 1e6)), "MESSAGE": message}
        if message.startswith(unit):
            entry |= {"_PID": "1", "_SYSTEMD_UNIT": "init.scope", "UNIT": unit}
        else:
            entry |= {"_PID": "42", "_SYSTEMD_UNIT": unit}
        lines.append(json.dumps(entry))
    return "\n".join(lines)


def test_harness_reads_warm_shutdowns_from_the_worker_journal() -> None:
    unit, other = "tutormax-worker@1.service", "tutormax-worker@2.service"
    done = "[..: INFO/ForkPoolWorker-1] Task tutormax.build_export[0a-1] succeeded in 9.1s: {'export_id': 'e-1'}"
    journal = _journal(
        (100.0, unit, done.replace("e-1", "e-0")),  # before SIGTERM: not counted
        (101.0, unit, "worker: Warm shutdown (MainProcess)"),
        (101.0, other, "worker: Warm shutdown (MainProcess)"),
        (104.5, unit, done),
        (105.0, unit, f"{unit}: Deactivated successfully."),
        (161.0, other, f"{other}: State 'stop-sigterm' timed out. Killing."),
    )
    clean, killed = rolling.parse_warm_shutdowns("w1", journal)
    assert (clean["unit"], clean["ended"], clean["stop_seconds"]) == (unit, "clean", 4.0)
    assert [(t["export_id"], t["seconds_after_sigterm"]) for t in clean["finished_after_sigterm"]] == [("e-1", 3.5)]
    assert killed["unit"] == other
    assert "Killing" in killed["ended"]
    assert killed["finished_after_sigterm"] == []


def test_describe_failures_places_them_against_the_playbook_and_the_api_phase() -> None:
    t0 = 2_000_000.0
    ok = [loadgen.Record(t0 + i, "health", "GET", 200, 4.0) for i in range(50)]
    failed = [
        loadgen.Record(t0 + 30.5, "list_tutors", "GET", 503, 5012.0, detail='{"detail":"the database is unavailable"}'),
        loadgen.Record(t0 + 12.25, "create_tutor", "POST", 0, 10000.0, "timeout: no complete answer in time"),
    ]
    assert rolling.describe_failures(ok, t0, None) == ""
    text = rolling.describe_failures(ok + failed, t0 + 2, (t0 + 20, t0 + 40))
    assert "failed from +10.2 s to +28.5 s after the playbook started" in text
    assert "(API phase +18.0 to +38.0 s: 1 of them)" in text
    assert text.index("POST create_tutor -> timeout") < text.index("GET list_tutors -> 503 after 5012 ms")
    assert "the database is unavailable" in text


def test_every_ansible_run_of_the_harness_takes_its_nice_level_and_forks(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    api:\n      hosts:\n        a1:\n")
    tuned = rolling.Cluster(str(inventory), "http://127.0.0.1:8080", [], [], nice=10, forks=5)
    assert tuned.api == ["a1"]
    assert tuned.command("ansible-playbook", "site.yml") == [
        *("nice", "-n", "10", "ansible-playbook", "--forks", "5", "-i", str(inventory), "site.yml")
    ]
    plain = rolling.Cluster(str(inventory), "http://127.0.0.1:8080", [], [])
    assert plain.command("ansible", "all") == ["ansible", "-i", str(inventory), "all"]
