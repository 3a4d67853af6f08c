"""retire_plan (plugins/filter/scaling.py): what retiring hosts stops, in which order, and what it refuses."""

from __future__ import annotations

from typing import Any

from conftest import collection_import

scaling = collection_import("plugins.filter.scaling")


def svc(*names: str, state: str = "running", status: str = "enabled") -> dict[str, dict[str, str]]:
    return {n: {"name": n, "state": state, "status": status} for n in names}


API = svc(
    "systemd-journal-upload.service",
    "prometheus-node-exporter.service",
    "tutormax-api.service",
    "ssh.service",
    "cron.service",
)
REPLICA = svc(
    "patroni@15-main.service",
    "pgbackrest.service",
    "prometheus-postgres-exporter.service",
    "prometheus-node-exporter.service",
) | svc("postgresql@15-main.service", state="stopped", status="unknown")
GROUPS: dict[str, list[str]] = {
    "all": ["api1", "api4", "pg1", "pg2", "w1", "redis1"],
    "api": ["api1"],
    "retired": ["api4", "pg2"],
    "ungrouped": [],
}


def test_api_host_drains_then_stops_its_units_in_order() -> None:
    plan = scaling.retire_plan({"api4": {"services": API}}, GROUPS)
    assert plan["problems"] == []
    assert plan["hosts"]["api4"]["stop"] == [
        "tutormax-api.service",
        "prometheus-node-exporter.service",
        "systemd-journal-upload.service",
    ]
    assert plan["api"] == ["api4"]
    assert plan["postgres"] == plan["redis"] == plan["celery"] == plan["sentinel"] == []


def test_replica_stops_patroni_instance_and_leaves_postgres() -> None:
    plan = scaling.retire_plan({"pg2": {"services": REPLICA, "patroni_role": "replica"}}, GROUPS)
    assert plan["problems"] == []
    stop = plan["hosts"]["pg2"]["stop"]
    assert stop[:2] == ["patroni@15-main.service", "pgbackrest.service"]
    assert "postgresql@15-main.service" not in stop
    assert plan["postgres"] == ["pg2"]
    assert plan["api"] == []


def test_second_run_plans_nothing() -> None:
    done = svc(*API, state="stopped", status="disabled") | svc("ssh.service", "cron.service")
    plan = scaling.retire_plan({"api4": {"services": done}}, GROUPS)
    assert plan["hosts"]["api4"]["stop"] == []
    assert plan["api"] == []
    assert plan["problems"] == []


def test_workers_and_timers() -> None:
    found: dict[str, Any] = {
        "w1": {
            "services": svc("tutormax-worker@2.service", "tutormax-worker@1.service", "tutormax-beat.service"),
            "timers": "tutormax-pgbackrest-metrics.timer enabled enabled\nfstrim.timer enabled enabled\n"
            "pgbackrest-verify.timer disabled enabled\n",
        }
    }
    plan = scaling.retire_plan(found, {"retired": ["w1"]})
    assert plan["hosts"]["w1"]["stop"] == [
        "tutormax-beat.service",
        "tutormax-worker@1.service",
        "tutormax-worker@2.service",
        "tutormax-pgbackrest-metrics.timer",
    ]
    assert plan["celery"] == ["w1"]


def test_refuses_the_leader_and_the_redis_master() -> None:
    found = {
        "pg2": {"services": REPLICA, "patroni_role": "leader"},
        "redis1": {"services": svc("redis-server.service", "redis-sentinel.service"), "redis_role": "master"},
    }
    plan = scaling.retire_plan(found, {"retired": ["pg2", "redis1"]})
    assert len(plan["problems"]) == 2
    assert "pg2 is the Patroni leader: switch over first" in plan["problems"][0]
    assert "redis1 is the Redis master: fail over first" in plan["problems"][1]


def test_refuses_standby_leader_etcd_and_keepalived() -> None:
    found = {
        "pg2": {"services": REPLICA, "patroni_role": "standby_leader"},
        "redis2": {"services": svc("redis-server.service", "etcd.service"), "redis_role": "slave"},
        "lb2": {"services": svc("nginx.service", "keepalived.service")},
    }
    problems = scaling.retire_plan(found, {"retired": list(found)})["problems"]
    assert [p.split(" ")[0] for p in problems] == ["lb2", "pg2", "redis2"]
    assert "keepalived.service" in problems[0]
    assert "standby_leader" in problems[1]
    assert "etcd" in problems[2]


def test_a_stopped_etcd_does_not_refuse() -> None:
    found = {"redis2": {"services": svc("etcd.service", state="stopped", status="disabled"), "redis_role": ""}}
    assert scaling.retire_plan(found, {"retired": ["redis2"]})["problems"] == []


def test_refuses_a_host_still_in_another_group() -> None:
    plan = scaling.retire_plan({"api1": {"services": API}}, GROUPS | {"retired": ["api1"]})
    assert plan["problems"] == ["api1 is in retired and still in api: take it out of those groups"]


def test_redis_replica_leaves_redis_and_sentinel() -> None:
    found = {"redis3": {"services": svc("redis-server.service", "redis-sentinel.service"), "redis_role": "slave"}}
    plan = scaling.retire_plan(found, {"retired": ["redis3"]})
    assert plan["hosts"]["redis3"]["stop"] == ["redis-server.service", "redis-sentinel.service"]
    assert plan["redis"] == plan["sentinel"] == ["redis3"]
