# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""scrape_configs: Prometheus' scrape jobs for the stack, from the inventory's groups (one rule for
the monitoring role's prometheus.yml and the tests that expect every target up); alertmanager_config:
Alertmanager's configuration from the monitoring role's receiver and grouping settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils.hosts import private_address

#: Ports used when the caller's ``ports`` leaves one out (the usual ports; the contract's for the
#: stack's own services).
DEFAULT_PORTS: dict[str, int] = {
    "node": 9100,
    "api": 8000,
    "celery": 9808,
    "postgres": 9187,
    "patroni": 8008,
    "etcd": 2379,
    "redis_exporter": 9121,
    "sentinel_exporter": 9355,
    "nginx": 9113,
    "blackbox": 9115,
    "prometheus": 9090,
    "alertmanager": 9093,
    "https": 443,
}


def _group(groups: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [str(h) for h in groups.get(name, [])]


def _target(host: str, address: str, port: int, **labels: str) -> dict[str, Any]:
    return {"targets": [f"{address}:{port}"], "labels": {"host": host, "instance": f"{host}:{port}", **labels}}


def scrape_configs(
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Any],
    ports: Mapping[str, int] | None = None,
    worker_instances: Mapping[str, int] | None = None,
    agent_hosts: Sequence[str] | None = None,
    stopped_api_hosts: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Every scrape job of the stack, each target labelled ``host`` (inventory name), ``instance``
    (``host:port``) and ``job``; addresses are the hosts' private addresses.

    ``worker_instances`` maps a Celery worker host to its number of ``tutormax-worker@N`` instances
    (default: the host's ``celery_worker_instances``, else 1); worker N serves on the celery port
    + N - 1. ``agent_hosts`` are the hosts
    that run the node exporter (default: every host of the inventory). ``stopped_api_hosts`` are API hosts
    left out of job ``api`` (a decommissioned blue-green colour).
    """
    p = {**DEFAULT_PORTS, **{k: int(v) for k, v in (ports or {}).items()}}
    for host in groups.get("all", []):
        if host not in hostvars:
            raise AnsibleFilterError(f"scrape_configs: {host!r} has no hostvars")

    def addr(host: str) -> str:
        return str(private_address(hostvars[host], host))

    def job(name: str, hosts: Sequence[str], port: int) -> dict[str, Any] | None:
        if not hosts:
            return None
        return {"job_name": name, "static_configs": [_target(h, addr(h), port) for h in hosts]}

    agents = list(agent_hosts) if agent_hosts is not None else _group(groups, "all")
    workers = _group(groups, "celery_worker")
    celery_targets = [
        _target(h, addr(h), p["celery"] + n, worker=str(n + 1))
        for h in workers
        for n in range(int((worker_instances or {}).get(h, hostvars[h].get("celery_worker_instances", 1))))
    ]
    sentinels = _group(groups, "redis_sentinel")
    lbs = _group(groups, "lb")
    jobs: list[dict[str, Any] | None] = [
        job("prometheus", _group(groups, "monitoring"), p["prometheus"]),
        job("alertmanager", _group(groups, "monitoring"), p["alertmanager"]),
        job("node", agents, p["node"]),
        job("api", [h for h in _group(groups, "api") if h not in (stopped_api_hosts or [])], p["api"]),
        {"job_name": "celery", "static_configs": celery_targets} if celery_targets else None,
        job("postgres", _group(groups, "postgres"), p["postgres"]),
        job("patroni", _group(groups, "postgres"), p["patroni"]),
        job("etcd", _group(groups, "etcd"), p["etcd"]),
        job("redis", _group(groups, "redis"), p["redis_exporter"]),
        # A second redis exporter on each Sentinel host, for its Sentinel.
        job("sentinel", sentinels, p["sentinel_exporter"]),
        job("nginx", lbs, p["nginx"]),
        # The blackbox exporter on the monitoring host asks each load balancer for /health over
        # HTTPS: the path clients take, and the certificate they are shown.
        {
            "job_name": "probe",
            "metrics_path": "/probe",
            "params": {"module": ["tutormax_https"]},
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{p['blackbox']}"],
                    "labels": {
                        "host": h,
                        "instance": f"{h}:{p['https']}",
                        "__param_target": f"https://{addr(h)}:{p['https']}/health",
                    },
                }
                for h in lbs
            ],
        }
        if lbs and _group(groups, "monitoring")
        else None,
    ]
    return [j for j in jobs if j is not None]


RECEIVERS = ("none", "webhook", "email")


def alertmanager_config(settings: Mapping[str, Any], inhibit_rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Alertmanager's configuration: one receiver named ``tutormax`` (``settings['receiver']``: none,
    webhook or email), the route's grouping and timings, and ``inhibit_rules`` as given.

    ``settings`` holds the monitoring role's ``monitoring_alert_*`` values without that prefix:
    receiver, webhook_url, email_to, email_from, smtp_smarthost, smtp_username, smtp_password,
    smtp_require_tls, send_resolved, group_by, group_wait, group_interval, repeat_interval.
    """
    kind = str(settings.get("receiver", "none"))
    if kind not in RECEIVERS:
        raise AnsibleFilterError(f"alertmanager_config: receiver {kind!r} is not one of {', '.join(RECEIVERS)}")
    resolved = bool(settings.get("send_resolved", True))
    receiver: dict[str, Any] = {"name": "tutormax"}
    if kind == "webhook":
        receiver["webhook_configs"] = [{"url": str(settings["webhook_url"]), "send_resolved": resolved}]
    elif kind == "email":
        email: dict[str, Any] = {
            "to": str(settings["email_to"]),
            "from": str(settings["email_from"]),
            "smarthost": str(settings["smtp_smarthost"]),
            "require_tls": bool(settings.get("smtp_require_tls", True)),
            "send_resolved": resolved,
        }
        if settings.get("smtp_username"):
            email["auth_username"] = str(settings["smtp_username"])
            email["auth_password"] = str(settings.get("smtp_password", ""))
        receiver["email_configs"] = [email]
    return {
        "route": {
            "receiver": "tutormax",
            "group_by": [str(label) for label in settings.get("group_by", ["alertname", "host"])],
            "group_wait": str(settings.get("group_wait", "30s")),
            "group_interval": str(settings.get("group_interval", "5m")),
            "repeat_interval": str(settings.get("repeat_interval", "4h")),
        },
        "receivers": [receiver],
        "inhibit_rules": [dict(rule) for rule in inhibit_rules],
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"scrape_configs": scrape_configs, "alertmanager_config": alertmanager_config}
