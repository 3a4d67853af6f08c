"""missing_packages (plugins/filter/packages.py): the roles run on every host ask dpkg-query and call apt
only for what is not installed."""

from __future__ import annotations

from conftest import collection_import

packages = collection_import("plugins.filter.packages")

OUT = """prometheus-node-exporter installed
systemd-journal-remote config-files
prometheus-redis-exporter:amd64 installed
nginx not-installed
"""


def test_only_installed_packages_count() -> None:
    wanted = ["prometheus-node-exporter", "systemd-journal-remote", "prometheus-redis-exporter", "nginx", "curl"]
    assert packages.missing_packages(wanted, OUT) == ["systemd-journal-remote", "nginx", "curl"]


def test_everything_installed_leaves_nothing_and_no_output_everything() -> None:
    assert packages.missing_packages(["prometheus-node-exporter"], OUT) == []
    assert packages.missing_packages(["a", "b"], "") == ["a", "b"]
