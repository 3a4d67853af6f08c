"""rolling_update.yml on the cluster scenario's hosts under steady load through the load balancer.

Runs last (file order: test_api.py, test_celery.py, test_cluster.py, then this one), on 1.0.0 as
converge and the side effect left the cluster. benchmarks/rolling_update.py does the work and the checks:
an update to the next patch release with export tasks running while the workers restart, while a
fourth API host that never ran the API joins the `api` group (it is deployed first, then put into
the pool); a release whose health gate fails (stops after the first host, which stays out of the
pool), and the rollback to the release before it; each step under >= 100 requests/s with zero
failed requests. Its figures go to benchmarks/results/ (JSON, one PNG per step) and are printed.
That the rollout leaves what site.yml writes is checked by the next site.yml run (test_site_live.py:
only the tasks of a settings change may change), not by the harness's own site.yml --check, which
would be a third run of the app plays for the same finding (--no-site-check).

Then, on the scenario's API hosts: the new release went live beside the kept one (not reinstalled),
both share one dependency layer, the rollout's switch pruned a layer no release uses (planted before
it), Prometheus scrapes the host it added (its API and node exporter), and no secret value is in
the output of any of its runs (the update ran the migrations and rewrote every environment file).
On the PostgreSQL hosts: the exports' UPDATEs that waited on the
lock holder were logged as slow statements, without their parameters (a finished export's whole
CSV, which PostgreSQL's default writes into the journal: about a megabyte per export). The rollback
step checks that switching back to a kept release builds and installs nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner
from cluster_hosts import FORKS, LB, NICE, address_of, scrape_targets, sh
from cluster_hosts import secrets as all_secrets
from secret_scan import scan_text

REPO = Path(__file__).resolve().parents[3]
STEPS = os.environ.get("TUTORMAX_ROLLING_STEPS", "update,fail,rollback")
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
API_HOSTS = sorted(RUNNER.get_hosts("api"))
PG_HOSTS = sorted(RUNNER.get_hosts("postgres"))
#: A host in no group until the update step adds it to `api` (scale out during a rollout).
NEW_API_HOST = "cluster-api4"
ROOT = "/opt/tutormax"
SITE = "lib/python3.11/site-packages"
# A layer no release links to, as a release built from an older lock leaves once it is pruned.
ORPHAN_LAYER = f"{ROOT}/deps/0000000000000000-py3.11"
#: The harness's report (benchmarks/results/rolling_update-<stamp>.json) and when it started.
REPORT: dict[str, Any] = {}


@pytest.mark.timeout(3000)
def test_rolling_update_fails_no_request_stops_on_a_bad_release_and_rolls_back() -> None:
    for host in API_HOSTS:
        sh(host, "install", "-d", "-m", "0755", ORPHAN_LAYER)
        sh(host, "touch", f"{ORPHAN_LAYER}/.installed")
    REPORT["started"] = time.time()
    argv = [sys.executable, str(REPO / "benchmarks" / "rolling_update.py")]
    argv += ["--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--lb-url", LB, "--steps", STEPS]
    argv += ["--new-api-host", NEW_API_HOST, "--no-site-check", "--forks", str(FORKS), "--controller-nice", str(NICE)]
    argv += ["--rate", "110", "--min-rate", "100", "--warmup", "5", "--baseline", "10", "--after", "5"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=2900, check=False)
    print(done.stdout[-20000:], done.stderr[-5000:], sep="\n")
    report = re.search(r"; report (\S+\.json)", done.stdout)
    if report:
        REPORT.update(json.loads(Path(report.group(1)).read_text()))
    assert done.returncode == 0, "a rolling-update check failed:\n" + "\n".join(
        line for line in done.stdout.splitlines() if "[FAIL]" in line or "FAIL" in line[:12]
    )


def run(host: str, script: str) -> str:
    return sh(host, "bash", "-c", script).strip()


@pytest.mark.parametrize("host", API_HOSTS)
def test_the_new_release_went_live_beside_the_kept_one_sharing_its_dependency_layer(host: str) -> None:
    assert "versions" in REPORT, "the rolling update wrote no report"
    before, new = REPORT["versions"]["before"], REPORT["versions"]["new"]
    assert run(host, f"basename $(readlink -f {ROOT}/current)") == new
    # The release that ran before is kept as it was: installed before the rollout, not again.
    installed = float(run(host, f"stat -c %Y {ROOT}/releases/{before}/.installed"))
    assert installed < REPORT["started"], f"{before} was installed again during the rollout"
    assert float(run(host, f"stat -c %Y {ROOT}/releases/{new}/.installed")) >= REPORT["started"]
    layers = {v: run(host, f"readlink -f {ROOT}/releases/{v}/deps") for v in (before, new)}
    assert layers[before] == layers[new], f"the new release installed its dependencies again: {layers}"
    layer = layers[new]
    # The switch (tutormax.cluster.release_switch with keep) pruned the orphan and kept the shared layer.
    assert run(host, f"ls {ROOT}/deps").split() == [layer.rsplit("/", 1)[1]]
    # uv came once, with the first release, and is not part of a release.
    assert run(host, f"ls {ROOT}/tools").split() == ["uv-0.13.9"]
    assert run(host, f"stat -c %a {ROOT}/tools/uv-0.13.9/uv") == "755"
    assert run(host, f"test -e {ROOT}/releases/{new}/bin/uv && echo present || echo absent") == "absent"
    assert run(host, f"cat {ROOT}/releases/{new}/{SITE}/tutormax-deps.pth") == f"{layer}/{SITE}"
    where = f"test -d {layer}/{SITE}/fastapi/__pycache__ && test ! -e {ROOT}/releases/{new}/{SITE}/fastapi && echo ok"
    # The dependencies are the layer's, compiled there as root once (the service user cannot write
    # there), and none is inside the release.
    assert run(host, where) == "ok"
    # The running API is the new release's interpreter, with the layer on its path.
    argv0 = run(host, "tr '\\0' '\\n' < /proc/$(systemctl show -P MainPID tutormax-api)/cmdline | head -n1")
    assert argv0 == f"{ROOT}/releases/{new}/bin/python"


def test_the_api_host_the_rollout_added_is_scraped_by_prometheus() -> None:
    assert "versions" in REPORT, "the rolling update wrote no report"
    monitoring = sorted(RUNNER.get_hosts("monitoring"))[0]
    found = scrape_targets(f"http://{address_of(monitoring)}:9090")
    jobs = {t["labels"]["job"]: t["health"] for t in found if t["labels"].get("host") == NEW_API_HOST}
    # Its API's /metrics and its node exporter, both answering (the post-check waited for every target).
    assert {jobs.get("api"), jobs.get("node")} == {"up"}, jobs


def test_no_secret_value_is_in_the_output_of_the_rollouts_runs() -> None:
    assert "steps" in REPORT, "the rolling update wrote no report"
    logs = {s["name"]: Path(s["figures"]["files"]["ansible_log"]).read_text() for s in REPORT["steps"]}
    # The update ran the migrations with the database's URL and wrote every environment file.
    assert "Apply the database migrations of release" in logs["update"]
    secrets = all_secrets()
    leaked = {name: found for name, text in logs.items() if (found := scan_text(text, secrets))}
    assert not leaked, f"secret values in the output of rolling_update.yml: {leaked}"


def test_slow_statements_of_the_rollout_were_logged_without_their_parameters() -> None:
    assert "started" in REPORT
    since = f"@{int(REPORT['started'])}"
    count = "journalctl -u 'patroni@*' --since {} -o cat --no-pager --grep {} | wc -l"
    slow = {h: int(run(h, count.format(since, "'LOG:  duration: '"))) for h in PG_HOSTS}
    shown = {h: int(run(h, count.format(since, "'DETAIL:  parameters: '"))) for h in PG_HOSTS}
    # Exports held on their row locks (the harness's holder) ran UPDATEs longer than
    # postgresql_log_min_duration_statement (1 s): the log has slow statements to show.
    assert sum(slow.values()) > 0, slow
    assert not any(shown.values()), f"slow statements logged with their parameters: {shown}"
