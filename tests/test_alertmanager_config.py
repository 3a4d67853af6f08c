"""Alertmanager's configuration (issue 21): the filter tutormax.cluster.alertmanager_config for each
receiver, with the role's own inhibit rules; and the role's task, which never shows the file (it may
hold an SMTP password, and a webhook URL is often a credential). The cluster scenario deploys the
webhook and checks what Alertmanager delivers; amtool checks the file on the host before it is
written (the template task's validate)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from conftest import collection_import, run_playbook

monitoring = collection_import("plugins.filter.monitoring")
REPO = Path(__file__).resolve().parent.parent
INHIBIT = yaml.safe_load((REPO / "roles/monitoring/files/alertmanager/inhibit_rules.yml").read_text())
DEFAULTS = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
SECRET_URL = "https://hooks.example.org/services/T000/B000/Xs9vQ2"  # noqa: S105 - a test value
SMTP_PASSWORD = "Vx7kP2mQ9sL4wN8r"  # noqa: S105 - a test value


def settings(**change: Any) -> dict[str, Any]:  # noqa: ANN401 - role values
    """The role's defaults, as the template passes them (without the monitoring_alert_ prefix)."""
    prefix = "monitoring_alert_"
    return {k.removeprefix(prefix): v for k, v in DEFAULTS.items() if k.startswith(prefix)} | change


def test_the_role_defaults_keep_alerts_in_alertmanager_grouped_by_alert_and_host() -> None:
    config = monitoring.alertmanager_config(settings(), INHIBIT)
    assert config["receivers"] == [{"name": "tutormax"}]
    assert config["route"] == {
        "receiver": "tutormax",
        "group_by": ["alertname", "host"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    host_down = next(r for r in config["inhibit_rules"] if r["source_matchers"] == ['alertname="TutorMaxHostDown"'])
    assert host_down == {
        "source_matchers": ['alertname="TutorMaxHostDown"'],
        "target_matchers": ['alertname!="TutorMaxHostDown"'],
        "equal": ["host"],
    }


def test_a_webhook_receiver() -> None:
    config = monitoring.alertmanager_config(settings(receiver="webhook", webhook_url=SECRET_URL), INHIBIT)
    assert config["receivers"] == [
        {"name": "tutormax", "webhook_configs": [{"url": SECRET_URL, "send_resolved": True}]}
    ]


def test_an_email_receiver_with_and_without_smtp_login() -> None:
    email = settings(
        receiver="email", email_to="ops@example.org", email_from="am@example.org", smtp_smarthost="smtp.example.org:587"
    )
    (receiver,) = monitoring.alertmanager_config(email, INHIBIT)["receivers"]
    assert receiver["email_configs"] == [
        {
            "to": "ops@example.org",
            "from": "am@example.org",
            "smarthost": "smtp.example.org:587",
            "require_tls": True,
            "send_resolved": True,
        }
    ]
    login = email | {"smtp_username": "am", "smtp_password": SMTP_PASSWORD, "smtp_require_tls": False}
    (receiver,) = monitoring.alertmanager_config(login, INHIBIT)["receivers"]
    assert receiver["email_configs"][0]["auth_username"] == "am"
    assert receiver["email_configs"][0]["auth_password"] == SMTP_PASSWORD
    assert receiver["email_configs"][0]["require_tls"] is False


def test_an_unknown_receiver_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="receiver 'pager' is not one of none, webhook, email"):
        monitoring.alertmanager_config(settings(receiver="pager"), INHIBIT)


@pytest.mark.parametrize("verbosity", [(), ("-vvv",)], ids=["default", "vvv"])
def test_the_role_never_shows_the_file_even_with_diff(tmp_path: Path, verbosity: tuple[str, ...]) -> None:
    variables = {
        "monitoring_alert_receiver": "email",
        "monitoring_alert_email_to": "ops@example.org",
        "monitoring_alert_email_from": "am@example.org",
        "monitoring_alert_smtp_smarthost": "smtp.example.org:587",
        "monitoring_alert_smtp_username": "am",
        "monitoring_alert_smtp_password": SMTP_PASSWORD,
        "monitoring_alert_webhook_url": SECRET_URL,
    }
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": variables,
            # Ended before the handlers (reloads of services this machine does not run).
            "tasks": [
                {
                    "ansible.builtin.include_role": {
                        "name": "tutormax.cluster.monitoring",
                        "tasks_from": "alertmanager.yml",
                    }
                },
                {"ansible.builtin.meta": "end_play"},
            ],
        }
    ]
    inventory = {"all": {"hosts": {"localhost": {"ansible_python_interpreter": sys.executable}}}}
    result = run_playbook(tmp_path, inventory, play, args=("--check", "--diff", *verbosity))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Write Alertmanager's configuration" in out, out
    assert SMTP_PASSWORD not in out
    assert SECRET_URL not in out
    assert "smtp.example.org:587" not in out, "the file's content was shown"
