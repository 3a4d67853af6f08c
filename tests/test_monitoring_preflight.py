"""The monitoring and exporters roles refuse a bad input in their preflight, before anything changes
(issue 21): an alert receiver without its settings, a malformed interval or retention, a dashboard on
a load balancer's port, a missing or placeholder Redis exporter password.

The roles run without facts against hosts that cannot be reached: a play that fails in the preflight
has touched no host, and one that gets past it fails as unreachable at its first change.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_playbook

UNREACHABLE = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "nobody"}
REDIS_PASSWORD = "r5Tg2hY7uJ1kM9nB3vC6dd"  # noqa: S105 - a test value
SENTINEL_PASSWORD = "h6Wd1yU5nE8cJ3qA7sF2cc"  # noqa: S105 - a test value


def run_role(tmp_path: Path, role: str, groups: dict[str, Any], variables: dict[str, Any]) -> str:
    inventory = {"all": {"vars": {**UNREACHABLE, **variables}, "children": groups}}
    playbook = [{"name": f"Apply {role}", "hosts": "all", "gather_facts": False, "roles": [f"tutormax.cluster.{role}"]}]
    result: subprocess.CompletedProcess[str] = run_playbook(tmp_path, inventory, playbook)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out  # unreachable hosts: never a success
    return out


def monitoring(tmp_path: Path, groups: dict[str, Any] | None = None, **variables: Any) -> str:  # noqa: ANN401
    return run_role(tmp_path, "monitoring", groups or {"monitoring": {"hosts": {"mon-1": {}}}}, variables)


@pytest.mark.parametrize(
    ("variables", "names"),
    [
        ({"monitoring_alert_receiver": "pager"}, "monitoring_alert_receiver is pager"),
        ({"monitoring_alert_receiver": "webhook"}, "monitoring_alert_webhook_url"),
        ({"monitoring_alert_receiver": "webhook", "monitoring_alert_webhook_url": "ftp://x"}, "http:// or https://"),
        (
            {"monitoring_alert_receiver": "email", "monitoring_alert_email_to": "ops@example.org",
             "monitoring_alert_email_from": "am@example.org", "monitoring_alert_smtp_smarthost": "smtp.example.org"},
            "monitoring_alert_smtp_smarthost as host:port",
        ),
        ({"monitoring_scrape_interval": "10 seconds"}, "monitoring_scrape_interval"),
        ({"monitoring_retention_time": "1 month"}, "monitoring_retention_time (1 month)"),
        ({"monitoring_retention_size": "10G"}, "monitoring_retention_size (10G)"),
    ],
    ids=["receiver", "webhook-url", "webhook-scheme", "smarthost", "interval", "retention", "size"],
)  # fmt: skip
def test_a_bad_setting_fails_the_preflight_naming_it(tmp_path: Path, variables: dict[str, Any], names: str) -> None:
    out = monitoring(tmp_path, **variables)
    assert names in " ".join(out.split()), out
    assert "Nothing was changed" in " ".join(out.split()), out
    assert "UNREACHABLE" not in out, "a task past the preflight ran:\n" + out


def test_a_dashboard_on_a_load_balancers_port_is_refused(tmp_path: Path) -> None:
    groups: dict[str, Any] = {"monitoring": {"hosts": {"both-1": {}}}, "lb": {"hosts": {"both-1": {}}}}
    out = " ".join(monitoring(tmp_path, groups).split())
    assert "both-1 is a load balancer (group lb) and a monitoring host" in out, out
    assert "UNREACHABLE" not in out
    out = " ".join(monitoring(tmp_path, groups, monitoring_dashboard_port=8090).split())
    assert "UNREACHABLE" in out, out


def test_good_settings_pass_the_preflight_and_meet_the_unreachable_host(tmp_path: Path) -> None:
    out = monitoring(
        tmp_path,
        monitoring_alert_receiver="email",
        monitoring_alert_email_to="ops@example.org",
        monitoring_alert_email_from="am@example.org",
        monitoring_alert_smtp_smarthost="smtp.example.org:587",
    )
    assert "UNREACHABLE" in out, out
    assert "Install the monitoring packages" in out, out


REDIS_GROUPS: dict[str, Any] = {"redis": {"hosts": {"redis-1": {}}}, "redis_sentinel": {"hosts": {"redis-1": {}}}}


@pytest.mark.parametrize("value", [None, "CHANGE_ME_redis_monitor_password"], ids=["missing", "placeholder"])
def test_the_redis_exporter_refuses_a_missing_or_placeholder_password(tmp_path: Path, value: str | None) -> None:
    variables = {"exporters_sentinel_password": SENTINEL_PASSWORD}
    if value is not None:
        variables["exporters_redis_password"] = value
    out = run_role(tmp_path, "exporters", REDIS_GROUPS, variables)
    assert "exporters_redis_password is missing, short or still a placeholder" in " ".join(out.split()), out
    assert "UNREACHABLE" not in out
    assert "CHANGE_ME_redis_monitor_password" not in out


def test_the_exporters_with_their_passwords_meet_the_unreachable_host_and_print_no_secret(tmp_path: Path) -> None:
    variables = {"exporters_redis_password": REDIS_PASSWORD, "exporters_sentinel_password": SENTINEL_PASSWORD}
    out = run_role(tmp_path, "exporters", REDIS_GROUPS, variables)
    assert "UNREACHABLE" in out, out
    assert "Ask dpkg which exporters are installed" in out, out
    assert REDIS_PASSWORD not in out
    assert SENTINEL_PASSWORD not in out
