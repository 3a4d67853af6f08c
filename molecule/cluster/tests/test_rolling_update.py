"""rolling_update.yml on the cluster scenario's hosts under steady load through the load balancer.

Runs last (file order: test_api.py, test_celery.py, test_cluster.py, then this one), on 1.0.0 as
converge and the side effect left the cluster. benchmarks/rolling_update.py does the work and the checks:
an update to the next patch release with export tasks running while the workers restart, while a
fourth API host that never ran the API joins the `api` group (it is deployed first, then put into
the pool); then site.yml --check with that release must find nothing to change on the load
balancers, API and Celery hosts; a release whose health gate fails (stops after the first host, which stays out of the
pool), and the rollback to the release before it; each step under >= 100 requests/s with zero
failed requests. Its figures go to benchmarks/results/ (JSON, one PNG per step) and are printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_hosts import LB

REPO = Path(__file__).resolve().parents[3]
STEPS = os.environ.get("TUTORMAX_ROLLING_STEPS", "update,fail,rollback")


@pytest.mark.timeout(3000)
def test_rolling_update_fails_no_request_stops_on_a_bad_release_and_rolls_back() -> None:
    argv = [sys.executable, str(REPO / "benchmarks" / "rolling_update.py")]
    argv += ["--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--lb-url", LB, "--steps", STEPS]
    argv += ["--new-api-host", "cluster-api4"]
    argv += ["--rate", "110", "--min-rate", "100", "--warmup", "5", "--baseline", "10", "--after", "5"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=2900, check=False)
    print(done.stdout[-20000:], done.stderr[-5000:], sep="\n")
    assert done.returncode == 0, "a rolling-update check failed:\n" + "\n".join(
        line for line in done.stdout.splitlines() if "[FAIL]" in line or "FAIL" in line[:12]
    )
