"""molecule/shared/containers.py: every scenario's create and destroy step.

The `docker run` arguments come from each scenario's own platforms (read from its molecule.yml,
as Molecule passes them), and a platform key the script does not handle stops it by name instead
of being dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, load_module

containers = load_module("molecule_containers", REPO / "molecule" / "shared" / "containers.py")
SCENARIOS = sorted(REPO.glob("molecule/*/molecule.yml"))


def platforms(path: Path) -> list[dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return list(document["platforms"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.parent.name)
def test_every_scenario_platform_becomes_one_docker_run_with_all_its_settings(scenario: Path) -> None:
    for platform in platforms(scenario):
        argv = containers.run_args(platform)
        name = platform["name"]
        assert argv[:5] == ["run", "--detach", "--name", name, "--hostname"]
        assert argv[argv.index("--label") + 1] == "owner=molecule"
        for cap in platform["capabilities"]:
            assert f"--cap-add={cap}" in argv
        assert f"--cgroupns={platform['cgroupns_mode']}" in argv
        assert [a for a in argv if a.startswith("--tmpfs=")] == [f"--tmpfs={t}" for t in platform["tmpfs"]]
        assert [a for a in argv if a.startswith("--volume=")] == [f"--volume={v}" for v in platform["volumes"]]
        published = [a for a in argv if a.startswith("--publish=")]
        assert published == [f"--publish={p}" for p in platform.get("published_ports", [])]
        assert f"--network={platform['networks'][0]['name']}" in argv
        # The image, then systemd as the container's command.
        assert argv[-2:] == [platform["image"], "/lib/systemd/systemd"]


def test_the_cluster_scenario_publishes_its_load_balancer_on_loopback_only() -> None:
    lbs = [p for p in platforms(REPO / "molecule" / "cluster" / "molecule.yml") if "lb" in p.get("groups", [])]
    argv = containers.run_args(lbs[0])
    assert [a for a in argv if a.startswith("--publish=")] == [
        "--publish=127.0.0.1:18080:80",
        "--publish=127.0.0.1:18443:443",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"privileged": True}, "platform keys not supported by containers.py: ['privileged']"),
        ({"pre_build_image": False}, "set pre_build_image: true"),
    ],
)
def test_a_setting_the_script_cannot_apply_stops_it_naming_the_setting(extra: dict[str, Any], message: str) -> None:
    platform = {**platforms(REPO / "molecule" / "common" / "molecule.yml")[0], **extra}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        containers.run_args(platform)


def test_the_networks_are_created_once_for_all_platforms() -> None:
    cluster = platforms(REPO / "molecule" / "cluster" / "molecule.yml")
    assert containers.networks_of(cluster) == ["tutormax-molecule-cluster"]


def test_the_cluster_scenario_weights_the_serving_path_above_the_celery_hosts() -> None:
    shares: dict[str, int] = {}
    for platform in platforms(REPO / "molecule" / "cluster" / "molecule.yml"):
        argv = containers.run_args(platform)
        weights = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--cpu-shares=")]
        shares[platform["name"]] = weights[0] if weights else 1024  # Docker's default
        for key, value in platform.get("labels", {}).items():
            assert f"--label={key}={value}" in argv
    serving = [shares[n] for n in shares if any(r in n for r in ("-lb", "-api", "-pg"))]
    background = [shares[n] for n in shares if "-worker" in n]
    assert len(serving) == 9  # lb1-2, api1-4, pg1-3
    assert len(background) == 2
    assert min(serving) > shares["cluster-redis1"] > max(background)


def test_a_network_with_a_fixed_subnet_and_fixed_addresses_is_created_as_given() -> None:
    lb = platforms(REPO / "molecule" / "nginx_lb" / "molecule.yml")
    assert containers.network_create_args(lb) == {
        "tutormax-molecule-nginx_lb": ["--subnet=10.203.20.0/24", "--ip-range=10.203.20.0/25"]
    }
    assert "--ip=10.203.20.11" in containers.run_args(lb[0])
    other = [
        {
            **lb[1],
            "docker_networks": [{"name": "tutormax-molecule-nginx_lb", "ipam_config": [{"subnet": "10.9.0.0/24"}]}],
        }
    ]
    with pytest.raises(ValueError, match="set up two ways"):
        containers.network_create_args([lb[0], *other])
    with pytest.raises(ValueError, match="not supported"):
        containers.network_create_args([{**lb[0], "docker_networks": [{"name": "n", "driver": "macvlan"}]}])
    with pytest.raises(ValueError, match="network settings not supported"):
        containers.run_args({**lb[0], "networks": [{"name": "n", "aliases": ["x"]}]})
