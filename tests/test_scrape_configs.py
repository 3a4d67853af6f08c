"""Prometheus' scrape jobs from the inventory (plugins/filter/monitoring.py, issue 21): every group's
hosts become targets labelled host, instance and job, on the hosts' private addresses. The cluster
scenario's test_monitoring.py checks that every one of them is up on a live cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from conftest import REPO, collection_import, run_playbook

monitoring = collection_import("plugins.filter.monitoring")

GROUPS: dict[str, list[str]] = {
    "all": ["lb1", "api1", "api2", "pg1", "pg2", "r1", "r2", "r3", "w1", "mon1", "spare"],
    "lb": ["lb1"],
    "api": ["api1", "api2"],
    "postgres": ["pg1", "pg2"],
    "redis": ["r1", "r2"],
    "redis_sentinel": ["r1", "r2", "r3"],
    "etcd": ["r1", "r2", "r3"],
    "celery_worker": ["w1"],
    "monitoring": ["mon1"],
}
HOSTVARS: dict[str, Any] = {
    h: {"ansible_facts": {"default_ipv4": {"address": f"10.0.0.{i + 10}"}}} for i, h in enumerate(GROUPS["all"])
}


def jobs(**kwargs: Any) -> dict[str, dict[str, Any]]:  # noqa: ANN401 - filter keyword arguments
    return {j["job_name"]: j for j in monitoring.scrape_configs(GROUPS, HOSTVARS, **kwargs)}


def targets(job: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    return {c["labels"]["host"]: (c["targets"][0], c["labels"]) for c in job["static_configs"]}


def test_every_group_becomes_its_jobs() -> None:
    assert sorted(jobs()) == sorted(
        [
            "prometheus",
            "alertmanager",
            "node",
            "api",
            "celery",
            "postgres",
            "patroni",
            "etcd",
            "redis",
            "sentinel",
            "nginx",
            "probe",
        ]
    )


def test_targets_carry_host_and_instance_on_the_private_address() -> None:
    api = targets(jobs()["api"])
    assert api == {
        "api1": ("10.0.0.11:8000", {"host": "api1", "instance": "api1:8000"}),
        "api2": ("10.0.0.12:8000", {"host": "api2", "instance": "api2:8000"}),
    }
    # tutormax_private_address wins over the fact, as for every other role.
    hostvars = {**HOSTVARS, "pg1": {**HOSTVARS["pg1"], "tutormax_private_address": "192.168.5.5"}}
    pg = {j["job_name"]: j for j in monitoring.scrape_configs(GROUPS, hostvars)}["patroni"]
    assert targets(pg)["pg1"][0] == "192.168.5.5:8008"


def test_every_host_gets_a_node_target_including_hosts_in_no_group() -> None:
    assert sorted(targets(jobs()["node"])) == sorted(GROUPS["all"])
    assert sorted(targets(jobs(agent_hosts=["api1"])["node"])) == ["api1"]


def test_a_decommissioned_blue_green_colour_leaves_only_the_api_job() -> None:
    found = jobs(stopped_api_hosts=["api2"])
    assert sorted(targets(found["api"])) == ["api1"]
    assert "api2" in targets(found["node"])


def test_celery_worker_instances_each_get_their_port() -> None:
    celery = jobs(worker_instances={"w1": 2})["celery"]["static_configs"]
    assert [(c["targets"][0], c["labels"]["worker"], c["labels"]["instance"]) for c in celery] == [
        ("10.0.0.18:9808", "1", "w1:9808"),
        ("10.0.0.18:9809", "2", "w1:9809"),
    ]


def test_probe_and_ports_follow_the_arguments() -> None:
    probe = jobs(ports={"blackbox": 9200, "https": 8443})["probe"]
    assert probe["metrics_path"] == "/probe"
    (target,) = probe["static_configs"]
    assert target["targets"] == ["127.0.0.1:9200"]
    assert target["labels"]["__param_target"] == "https://10.0.0.10:8443/health"
    assert target["labels"]["host"] == "lb1"


def test_missing_groups_drop_their_jobs() -> None:
    groups = {"all": ["api1"], "api": ["api1"]}
    names = [j["job_name"] for j in monitoring.scrape_configs(groups, HOSTVARS)]
    assert names == ["node", "api"]


def test_a_host_without_hostvars_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="'ghost' has no hostvars"):
        monitoring.scrape_configs({"all": ["ghost"]}, {})


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_the_node_hosts_default_keeps_the_inventory_order_without_the_retired(tmp_path: Path, seed: str) -> None:
    # The default decides the order of Prometheus' node targets, so the file: Ansible's filter
    # difference returned them in a set's order, another under each hash seed (each run), and the
    # monitoring role changed the file on every run once the group retired was in the inventory.
    default = yaml.safe_load((REPO / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    inventory: dict[str, Any] = {"all": {"children": {
        "api": {"hosts": {"cluster-b": {}, "cluster-a": {}}},
        "postgres": {"hosts": {"cluster-d": {}, "cluster-c": {}}},
        "retired": {"hosts": {"cluster-x": {}}},
    }}}  # fmt: skip
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"node_hosts": default["monitoring_node_hosts"]},
             "tasks": [{"ansible.builtin.debug": {"msg": "NODES {{ node_hosts | join(',') }}"}}]}]  # fmt: skip
    done = run_playbook(tmp_path, inventory, play, env={"PYTHONHASHSEED": seed})
    assert done.returncode == 0, done.stdout + done.stderr
    # The inventory's order (run_playbook writes it with sorted keys), the same under every seed.
    assert "NODES cluster-a,cluster-b,cluster-c,cluster-d" in done.stdout, done.stdout
