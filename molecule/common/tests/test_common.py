"""What the common role must leave on every host."""

from __future__ import annotations

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    __import__("os").environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def test_base_packages_and_extra_package_are_installed(host) -> None:
    for name in ("acl", "curl", "locales", "python3-apt", "jq"):
        assert host.package(name).is_installed, name


def test_service_user_is_a_system_account_without_login(host) -> None:
    user = host.user("tutormax")
    assert user.exists
    assert user.uid < 1000
    assert user.group == "tutormax"
    assert user.shell == "/usr/sbin/nologin"


def test_application_directories_have_their_owners_and_modes(host) -> None:
    expected = {
        "/opt/tutormax": ("root", "tutormax", 0o755),
        "/opt/tutormax/releases": ("root", "tutormax", 0o755),
        "/opt/tutormax/deps": ("root", "tutormax", 0o755),
        "/etc/tutormax": ("root", "tutormax", 0o750),
        "/var/lib/tutormax": ("tutormax", "tutormax", 0o750),
    }
    for path, (owner, group, mode) in expected.items():
        d = host.file(path)
        assert d.is_directory, path
        assert (d.user, d.group, d.mode) == (owner, group, mode), path


def test_locale_is_generated_and_default(host) -> None:
    assert "en_US.utf8" in host.check_output("locale -a")
    assert "LANG=en_US.UTF-8" in host.file("/etc/default/locale").content_string


def test_time_zone_is_utc(host) -> None:
    assert host.file("/etc/localtime").linked_to.endswith("Etc/UTC")


def test_journald_keeps_bounded_persistent_logs(host) -> None:
    conf = host.file("/etc/systemd/journald.conf.d/tutormax.conf").content_string
    assert "SystemMaxUse=1G" in conf
    assert "MaxRetentionSec=14day" in conf
    assert host.service("systemd-journald").is_running


def test_sysctl_file_holds_connection_tuning(host) -> None:
    conf = host.file("/etc/sysctl.d/60-tutormax.conf").content_string
    assert "net.core.somaxconn = 4096" in conf
    assert "net.ipv4.ip_local_port_range = 10240 65535" in conf


def test_services_inherit_the_raised_open_file_limit(host) -> None:
    # systemd was re-executed, so the manager itself reports the new default.
    out = host.check_output("systemctl show --property DefaultLimitNOFILE")
    assert out == "DefaultLimitNOFILE=65536"
    limits = host.file("/etc/security/limits.d/tutormax.conf").content_string
    assert "tutormax hard nofile 65536" in limits


def test_etc_hosts_lists_every_inventory_host(host) -> None:
    hosts = host.file("/etc/hosts").content_string
    assert "# BEGIN tutormax.cluster inventory" in hosts
    for name in ("common-1", "common-2"):
        assert any(line.split()[-1] == name for line in hosts.splitlines() if line and not line.startswith("#")), name


def test_no_unit_failed(host) -> None:
    assert host.check_output("systemctl --failed --no-legend --plain") == ""
