"""Blue-green deployments of the API (issue 22), last in file order (after test_sizing.py):
playbooks/blue_green.yml under load through the load balancers' floating address.

The scenario's API hosts get colours through an extra inventory (the scenario's own has none, so
every earlier test runs without blue-green): cluster-api1 and cluster-api2 blue, cluster-api3 green.
A host's processes share one release, so blue-green refuses a colour on a Celery host: the drill's
inventory takes cluster-api3 out of `celery_worker` (its worker stopped first, a warm shutdown), and
leaves out a PostgreSQL replica test_sizing.py retired, as the cluster's inventory would.

1. deploy: a new release (the next minor of what runs) goes to green while blue serves. The first
   run moves the load balancers to blue-green (green leaves the public pool gracefully). No failed
   request; afterwards only blue answers publicly, on the release it ran; green answers with the
   new release on the preview listener of both load balancers, which listens on 127.0.0.1 only.
2. A switch while a green host is down (its API stopped): refused, rc != 0, the message names the
   host and says blue still serves, the upstream files are unchanged, no failed request.
3. switch: no failed request; every answer after it comes from green with the new release, through
   both load balancers.
4. switch again (back): no failed request, nothing rebuilt; every answer after it from blue with its
   release.
5. decommission: no failed request; green's API stopped and disabled, the preview listener gone,
   Prometheus' api job without it.

Figures (each run's time, the switch's own time as the playbook measures it, the load) go to
benchmarks/results/blue_green_drill.json and are printed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import (
    REPO,
    SITE_LIVE_CHANGE,
    address_of,
    assert_served,
    inventory_copy,
    save_figures,
    scrape_targets,
    sh,
    site_yml_under_load,
)

sys.path.insert(0, str(REPO / "benchmarks"))
from blue_green_switch import switch_times

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
LB_HOSTS = sorted(RUNNER.get_hosts("lb"))
PG_HOSTS = sorted(RUNNER.get_hosts("postgres"))
BLUE = ["cluster-api1", "cluster-api2"]
GREEN = ["cluster-api3"]
UPSTREAMS = "/etc/nginx/conf.d/tutormax-upstreams.conf"
ROOT = "/opt/tutormax"
PROMETHEUS = f"http://{address_of(sorted(RUNNER.get_hosts('monitoring'))[0])}:9090"
FIGURES: dict[str, Any] = {}


def api_targets() -> set[str]:
    return {t["labels"]["host"] for t in scrape_targets(PROMETHEUS) if t["labels"].get("job") == "api"}


def running(host: str) -> str:
    return Path(sh(host, "readlink", f"{ROOT}/current").strip()).name


def next_minor(version: str) -> str:
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)\.", version).groups())  # type: ignore[union-attr]
    return f"{major}.{minor + 1}.0"


def health_via(lb: str, port: int, n: int = 20) -> dict[str, set[str]]:
    """Instance -> versions of ``n`` /health answers through a load balancer's own port (asked on the
    load balancer, so the loopback-only preview listener is reachable)."""
    script = (
        "import json, urllib.request\n"
        f"for _ in range({n}):\n"
        "    try:\n"
        f"        body = json.load(urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=5))\n"
        "        print(body.get('instance_id'), body.get('version'))\n"
        "    except Exception as exc:\n"
        "        print('error', type(exc).__name__)\n"
    )
    seen: dict[str, set[str]] = {}
    for line in sh(lb, "python3", "-c", script).splitlines():
        instance, version = line.split(maxsplit=1)
        seen.setdefault(instance, set()).add(version)
    return seen


def retired_replicas() -> list[str]:
    """The PostgreSQL hosts whose Patroni is disabled (test_sizing.py retired one)."""
    enabled = {h: sh(h, "systemctl", "is-enabled", "patroni@15-main", check=False).strip() for h in PG_HOSTS}
    return [h for h, state in enabled.items() if state == "disabled"]


def blue_green(tmp: Path, label: str, *args: str) -> tuple[int, dict[str, int], str, dict[str, Any]]:
    """blue_green.yml with the drill's inventory and the colours, under load; its figures noted."""
    # The settings change test_site_live.py made, kept as an operator keeps it in the inventory.
    change = tmp / "change.json"
    change.write_text(json.dumps(SITE_LIVE_CHANGE))
    rc, changed, output, figures = site_yml_under_load(
        f"blue_green_{label}",
        *args,
        "-e",
        f"@{change}",
        base=str(tmp / "inventory" / "hosts.yml"),
        inventories=(str(tmp / "colours.json"),),
        playbook="blue_green.yml",
    )
    FIGURES[label] = figures | {"changed": changed} | switch_times(output)
    save_figures("blue_green_drill", FIGURES)
    return rc, changed, output, figures


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole drill, each step's result kept for the tests below (a step that fails does not stop
    the later ones from being reported, but a switch is attempted only after its deploy passed)."""
    tmp = tmp_path_factory.mktemp("blue_green")
    colours = {h: {"tutormax_api_colour": "blue"} for h in BLUE} | {h: {"tutormax_api_colour": "green"} for h in GREEN}
    (tmp / "colours.json").write_text(json.dumps({"api": {"hosts": colours}}))
    retired = retired_replicas()
    inventory_copy(tmp, {GREEN[0]: ["celery_worker"]} | dict.fromkeys(retired, ()), retired)
    workers = sh(GREEN[0], "systemctl", "list-units", "--plain", "--no-legend", "tutormax-worker@*").split()
    for unit in [w for w in workers if w.startswith("tutormax-worker@")]:
        sh(GREEN[0], "systemctl", "disable", "--now", unit)
    old = running(BLUE[0])
    new = next_minor(old)
    out: dict[str, Any] = {"old": old, "new": new}
    FIGURES.update(old=old, new=new)

    out["deploy"] = blue_green(tmp, "deploy", "-e", "blue_green_action=deploy", "-e", f"tutormax_version={new}")
    out["after_deploy"] = {lb: {"public": health_via(lb, 80), "preview": health_via(lb, 8082)} for lb in LB_HOSTS}
    out["preview_listen"] = {lb: sh(lb, "ss", "-Hltn", "sport = :8082").split() for lb in LB_HOSTS}
    if out["deploy"][0] != 0:
        return out

    before = {lb: sh(lb, "cat", UPSTREAMS) for lb in LB_HOSTS}
    sh(GREEN[0], "systemctl", "stop", "tutormax-api")
    try:
        out["refused"] = blue_green(tmp, "refused", "-e", "blue_green_action=switch")
        out["refused_files_kept"] = all(sh(lb, "cat", UPSTREAMS) == before[lb] for lb in LB_HOSTS)
    finally:
        sh(GREEN[0], "systemctl", "start", "tutormax-api")
    for _ in range(60):
        if health_via(GREEN[0], 8000, 1).get(GREEN[0]) == {new}:
            break
        time.sleep(1)

    out["switch"] = blue_green(tmp, "switch", "-e", "blue_green_action=switch")
    out["after_switch"] = {lb: health_via(lb, 80) for lb in LB_HOSTS}
    out["back"] = blue_green(tmp, "back", "-e", "blue_green_action=switch")
    out["after_back"] = {lb: health_via(lb, 80) for lb in LB_HOSTS}
    out["decommission"] = blue_green(tmp, "decommission", "-e", "blue_green_action=decommission")
    out["green_unit"] = [sh(GREEN[0], "systemctl", c, "tutormax-api", check=False).strip()
                         for c in ("is-active", "is-enabled")]  # fmt: skip
    out["files_after"] = {lb: sh(lb, "cat", UPSTREAMS) for lb in LB_HOSTS}
    for _ in range(30):  # Prometheus applies a reload within seconds
        out["api_targets"] = api_targets()
        if GREEN[0] not in out["api_targets"]:
            break
        time.sleep(1)
    return out


def served_by(figures: dict[str, Any], hosts: list[str]) -> None:
    """The requests the load sent after the run returned all reached ``hosts``."""
    after = figures["instances_after"]
    assert after, "no request was answered after the run"
    assert set(after) <= set(hosts), after


@pytest.mark.timeout(1800)
def test_deploy_puts_the_release_on_the_idle_colour_only_and_fails_no_request(drill: dict[str, Any]) -> None:
    rc, _changed, output, figures = drill["deploy"]
    assert rc == 0, output[-4000:]
    assert_served(figures)
    served_by(figures, BLUE)
    for lb, seen in drill["after_deploy"].items():
        assert seen["public"] == {h: {drill["old"]} for h in BLUE if h in seen["public"]}, (lb, seen)
        assert seen["preview"] == {GREEN[0]: {drill["new"]}}, (lb, seen)
        # The preview listener is bound to the loopback only.
        assert "127.0.0.1:8082" in drill["preview_listen"][lb], drill["preview_listen"][lb]
        assert not any(a.startswith(("0.0.0.0:8082", "*:8082")) for a in drill["preview_listen"][lb])


def test_a_switch_to_a_colour_with_a_host_down_is_refused_and_names_it(drill: dict[str, Any]) -> None:
    assert "refused" in drill, "the deploy failed: no switch was tried"
    rc, changed, output, figures = drill["refused"]
    text = " ".join(output.split())
    assert rc != 0
    assert f"{GREEN[0]}: no answer through" in text, text[-3000:]
    assert "No switch: blue still serves" in text, text[-3000:]
    assert drill["refused_files_kept"]
    assert sum(changed.get(lb, 0) for lb in LB_HOSTS) == 0, changed
    assert_served(figures)
    served_by(figures, BLUE)


@pytest.mark.timeout(900)
def test_a_switch_serves_every_request_then_only_the_new_colour_answers(drill: dict[str, Any]) -> None:
    assert "switch" in drill, "the deploy failed: no switch was tried"
    rc, _changed, output, figures = drill["switch"]
    assert rc == 0, output[-4000:]
    assert_served(figures)
    served_by(figures, GREEN)
    for lb, seen in drill["after_switch"].items():
        assert seen == {GREEN[0]: {drill["new"]}}, (lb, seen)


def test_switching_back_is_the_same_command_and_touches_no_api_host(drill: dict[str, Any]) -> None:
    assert "back" in drill, "the deploy failed: no switch was tried"
    rc, changed, output, figures = drill["back"]
    assert rc == 0, output[-4000:]
    assert_served(figures)
    served_by(figures, BLUE)
    # Blue stayed warm: nothing is installed or restarted, only the load balancers change.
    assert {h: changed.get(h) for h in BLUE + GREEN} == dict.fromkeys(BLUE + GREEN, 0), changed
    for lb, seen in drill["after_back"].items():
        assert set(seen) <= set(BLUE), (lb, seen)
        assert all(v == {drill["old"]} for v in seen.values()), (lb, seen)


def test_decommission_stops_the_idle_colour_and_its_preview(drill: dict[str, Any]) -> None:
    assert "decommission" in drill, "the deploy failed: no decommission was tried"
    rc, _changed, output, figures = drill["decommission"]
    assert rc == 0, output[-4000:]
    assert_served(figures)
    served_by(figures, BLUE)
    assert drill["green_unit"] == ["inactive", "disabled"]
    # Stopped on purpose: Prometheus no longer scrapes it (no TutorMaxAPIDown), and still scrapes blue.
    assert drill["api_targets"] == set(BLUE), drill["api_targets"]
    for lb, text in drill["files_after"].items():
        assert "# blue-green: live blue, idle green decommissioned" in text, (lb, text)
        assert "tutormax_preview" not in text
        assert address_of(GREEN[0]) + ":8000" not in text
