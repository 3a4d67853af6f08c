"""The nginx_lb role refuses bad input before it touches a host, and names the variable to fix.

One ansible-playbook run (gather_facts: false) applies the role to one inventory host per case, each
with that case's variables and an address that refuses connections. A refusal by the argument spec
or the preflight happens on the controller; any later task fails as UNREACHABLE instead, which
the valid cases show. The JSON callback gives each host's first failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
BACKENDS = [{"name": "api1", "address": "10.0.0.11"}, {"name": "api2", "address": "10.0.0.12"}]
BOTH_DOWN = {"api1": {"down": True}, "api2": {"down": True}}

# case id -> (variables, text the failure must contain)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "certificate-without-key": ({"nginx_lb_tls_certificate": CERT}, "nginx_lb_tls_private_key"),
    "key-without-certificate": ({"nginx_lb_tls_private_key": KEY}, "nginx_lb_tls_certificate"),
    "placeholder-key": (
        {"nginx_lb_tls_certificate": CERT, "nginx_lb_tls_private_key": "CHANGE_ME_tls_private_key"},
        "nginx_lb_tls_private_key",
    ),
    "certificate-not-pem": (
        {"nginx_lb_tls_certificate": "not a pem", "nginx_lb_tls_private_key": KEY},
        "nginx_lb_tls_certificate",
    ),
    "rate-malformed": ({"nginx_lb_rate_limit_rate": "100/min"}, "nginx_lb_rate_limit_rate"),
    "burst-negative": ({"nginx_lb_rate_limit_burst": -1}, "nginx_lb_rate_limit_burst"),
    "allowlist-without-prefix": ({"nginx_lb_rate_limit_allowlist": ["10.0.0.0"]}, "nginx_lb_rate_limit_allowlist"),
    "real-ip-from-a-name": ({"nginx_lb_real_ip_from": ["proxy.example"]}, "nginx_lb_real_ip_from"),
    "body-size-malformed": ({"nginx_lb_client_max_body_size": "10 MB"}, "nginx_lb_client_max_body_size"),
    "duration-malformed": ({"nginx_lb_proxy_read_timeout": "1 minute"}, '"nginx_lb_proxy_read_timeout": "1 minute"'),
    "retry-non-idempotent": (
        {"nginx_lb_proxy_next_upstream": ["error", "non_idempotent"]},
        "nginx_lb_proxy_next_upstream",
    ),
    "tls-1-1": ({"nginx_lb_tls_protocols": ["TLSv1.1", "TLSv1.2"]}, "nginx_lb_tls_protocols"),
    "state-of-unknown-backend": ({"nginx_lb_backend_state": {"api9": {"down": True}}}, "nginx_lb_backend_state"),
    "every-backend-drained": ({"nginx_lb_backend_state": BOTH_DOWN}, "nginx_lb_backend_state"),
    "no-backends": ({"nginx_lb_backends": []}, "nginx_lb_backends"),
    "backend-without-address": ({"nginx_lb_backends": [{"name": "api1"}]}, "address"),
    "backend-with-empty-address": ({"nginx_lb_backends": [{"name": "api1", "address": ""}]}, "no address: api1"),
}
# The rolling update's entry point (tasks_from: upstream.yml) checks the backends too.
REFUSED_BY_UPSTREAM_ENTRY: dict[str, tuple[dict[str, Any], str]] = {
    "upstream-every-backend-drained": ({"nginx_lb_backend_state": BOTH_DOWN}, "nginx_lb_backend_state"),
}
ACCEPTED: dict[str, dict[str, Any]] = {
    "defaults": {},
    "given-certificate": {"nginx_lb_tls_certificate": CERT, "nginx_lb_tls_private_key": KEY},
    "drain-and-weight": {"nginx_lb_backend_state": {"api2": {"down": True}, "api1": {"weight": 3}}},
    "upstream-drain": {"nginx_lb_backend_state": {"api2": {"down": True}}},
}


def host(variables: dict[str, Any], entry_point: str = "main") -> dict[str, Any]:
    # Port 1 on loopback: any connection is refused at once.
    connection = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"}
    return connection | {"case_entry_point": entry_point, "nginx_lb_backends": BACKENDS} | variables


# One play for every case (ansible-playbook stops after a play in which every host failed).
PLAY = {
    "name": "Apply the role's entry point of each case",
    "hosts": "all",
    "gather_facts": False,
    "tasks": [
        {
            "name": f"Apply {entry_point}.yml",
            "ansible.builtin.include_role": {"name": "tutormax.cluster.nginx_lb", "tasks_from": entry_point},
            "when": f"case_entry_point == '{entry_point}'",
        }
        for entry_point in ("main", "upstream")
    ],
}


@pytest.fixture(scope="module")
def first_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    """Run every case once; return host -> (name of the task that failed first, its result)."""
    tmp = tmp_path_factory.mktemp("nginx_lb_preflight")
    hosts = {k: host(v) for k, (v, _) in REFUSED.items()}
    hosts |= {k: host(v, "upstream") for k, (v, _) in REFUSED_BY_UPSTREAM_ENTRY.items()}
    hosts |= {k: host(v, "upstream" if k.startswith("upstream") else "main") for k, v in ACCEPTED.items()}
    (tmp / "hosts.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(json.dumps([PLAY]))
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    # Only the JSON callback writes to stdout (the repository's profile_tasks and timer would too).
    json_only = "ansible.posix.json"
    env |= {"ANSIBLE_STDOUT_CALLBACK": json_only, "ANSIBLE_CALLBACKS_ENABLED": json_only, "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        ["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode != 0, result.stdout
    report = json.loads(result.stdout)
    failures: dict[str, tuple[str, dict[str, Any]]] = {}
    for task in report["plays"][0]["tasks"]:
        for name, outcome in task["hosts"].items():
            if (outcome.get("failed") or outcome.get("unreachable")) and name not in failures:
                failures[name] = (task["task"]["name"].removeprefix("tutormax.cluster.nginx_lb : "), outcome)
    return failures


def is_preflight(task_name: str) -> bool:
    """Argument spec validation and the preflight's checks: tasks that never connect to the host."""
    return task_name.startswith(("Validating arguments against arg spec", "Check "))


@pytest.mark.parametrize("case", [*REFUSED, *REFUSED_BY_UPSTREAM_ENTRY])
def test_bad_input_fails_in_the_preflight_and_names_the_variable(
    first_failures: dict[str, tuple[str, dict[str, Any]]], case: str
) -> None:
    named = {**REFUSED, **REFUSED_BY_UPSTREAM_ENTRY}[case][1]
    task, outcome = first_failures[case]
    assert not outcome.get("unreachable"), outcome
    assert is_preflight(task), task
    assert named in outcome["msg"], outcome["msg"]


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_input_passes_the_preflight_and_only_then_needs_the_host(
    first_failures: dict[str, tuple[str, dict[str, Any]]], case: str
) -> None:
    task, outcome = first_failures[case]
    assert outcome.get("unreachable"), (task, outcome)
    assert not is_preflight(task), task
