"""What the nginx_lb role must do in front of two API backends (stand-ins, see files/standin.py).

Clients run inside the containers (files/lbprobe.py): lb-1 itself talks to 127.0.0.1, which is on
the rate-limit allowlist (like the local cluster's load generator); lb-backend-1 and lb-backend-2
are two ordinary clients with their own addresses. Tests run in file order; the disruptive ones
(drain, broken config, stopped backend) come last and put things back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SCENARIO = Path(__file__).resolve().parent.parent
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
LB_URL = "http://127.0.0.1"
# The LB as the backend containers reach it: by name, on the scenario's network.
LB_FROM_BACKENDS = "http://lb-1"
BACKENDS = ("lb-backend-1", "lb-backend-2")
# The role's defaults the scenario keeps.
GIVEN_CN = "given.tutormax.test"
RATE_PER_MINUTE = 100
BURST = 20


def get_host(name: str) -> Any:  # noqa: ANN401 - testinfra's Host is untyped
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


@pytest.fixture(scope="module")
def lb() -> Any:  # noqa: ANN401
    return get_host("lb-1")


@pytest.fixture(scope="module")
def backend1() -> Any:  # noqa: ANN401
    return get_host("lb-backend-1")


@pytest.fixture(scope="module")
def backend2() -> Any:  # noqa: ANN401
    return get_host("lb-backend-2")


def probe(host, *args: str) -> dict[str, Any]:
    return json.loads(host.check_output("lbprobe " + " ".join(args)))


def playbook(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / name), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def access_log_line(lb, text: str) -> dict[str, Any]:
    """Last access log entry containing text (the log is buffered: lines arrive within a second)."""
    for _ in range(20):
        line = lb.check_output(f"grep -F '{text}' /var/log/nginx/access.log | tail -1")
        if line:
            return dict(json.loads(line))
        time.sleep(0.5)
    raise AssertionError(f"no access log line with {text}")


def worker_pids(lb) -> set[str]:
    return set(lb.check_output("pgrep -f 'nginx: worker process$' || true").split())


# --------------------------------------------------------------------------- installation


def test_debians_nginx_is_installed_enabled_running_and_hides_its_version(lb) -> None:
    assert lb.package("nginx").is_installed
    service = lb.service("nginx")
    assert service.is_enabled
    assert service.is_running
    first = probe(lb, "get", f"{LB_URL}/health")["first"]
    assert first["headers"]["server"] == "nginx"


def test_configuration_passes_nginx_t_and_no_backup_is_left_behind(lb) -> None:
    assert lb.run("nginx -t").rc == 0
    assert lb.check_output("find /etc/nginx -name '*~'") == ""


def test_both_load_balancers_serve_the_one_self_signed_certificate_naming_both_and_the_floating_address(lb) -> None:
    other = get_host("lb-2")
    for path in ("/etc/ssl/certs/tutormax-lb.pem", "/etc/ssl/private/tutormax-lb.key"):
        assert lb.file(path).sha256sum == other.file(path).sha256sum, f"{path} differs between lb-1 and lb-2"
    key = other.file("/etc/ssl/private/tutormax-lb.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    pem = lb.file("/etc/ssl/certs/tutormax-lb.pem").content
    names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"lb-1", "lb-2", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert "10.203.20.250" in {str(a) for a in names.get_values_for_type(x509.IPAddress)}


def test_upstreams_use_least_conn_keepalive_passive_checks_and_idempotent_retries_only(lb) -> None:
    upstreams = lb.file("/etc/nginx/conf.d/tutormax-upstreams.conf").content_string
    api = upstreams.split("upstream tutormax_api {")[1].split("}")[0]
    assert "least_conn;" in api
    assert "keepalive 32;" in api
    assert len(re.findall(r"server \S+:8000 max_fails=3 fail_timeout=10s;", api)) == 2
    ws = upstreams.split("upstream tutormax_ws {")[1].split("}")[0]
    assert "hash $remote_addr consistent;" in ws
    site = lb.file("/etc/nginx/conf.d/tutormax.conf").content_string
    assert "proxy_next_upstream error timeout;" in site
    assert "proxy_next_upstream_tries 2;" in site
    assert "non_idempotent" not in site


# --------------------------------------------------------------------------- routing


def test_requests_through_the_lb_reach_both_backends(lb) -> None:
    result = probe(lb, "get", f"{LB_URL}/api/items", "-n", "20")
    assert result["statuses"] == {"200": 20}
    assert set(result["hosts"]) == set(BACKENDS)


def test_health_is_proxied_and_not_rate_limited(backend2) -> None:
    result = probe(backend2, "get", f"{LB_FROM_BACKENDS}/health", "-n", "40")
    assert result["statuses"] == {"200": 40}
    assert set(result["hosts"]) <= set(BACKENDS)


def test_metrics_is_not_exposed_through_the_lb(lb, backend1) -> None:
    assert probe(backend1, "get", "http://127.0.0.1:8000/metrics")["statuses"] == {"200": 1}
    for path in ("/metrics", "/metrics/", "/metrics?format=prometheus"):
        assert probe(lb, "get", f"'{LB_URL}{path}'")["statuses"] == {"404": 1}, path


def test_json_is_gzipped_for_clients_that_accept_it(lb) -> None:
    plain = probe(lb, "get", f"{LB_URL}/api/items")["first"]
    zipped = probe(lb, "get", f"{LB_URL}/api/items", "--gzip")["first"]
    assert zipped["headers"]["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped["headers"]["vary"].lower()
    assert zipped["json"]["items"] == plain["json"]["items"]
    assert zipped["wire_bytes"] < plain["wire_bytes"] / 2
    assert "content-encoding" not in plain["headers"]


def test_security_headers_are_on_every_response_and_hsts_only_on_https(lb) -> None:
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
    }
    for url in (f"{LB_URL}/api/items", f"{LB_URL}/metrics", "https://127.0.0.1/api/items"):
        headers = probe(lb, "get", url)["first"]["headers"]
        for name, value in expected.items():
            assert headers.get(name) == value, (url, name)
        assert "default-src 'none'" in headers["content-security-policy"], url
        assert ("strict-transport-security" in headers) == url.startswith("https"), url
    assert probe(lb, "get", "https://127.0.0.1/api/items")["first"]["headers"]["strict-transport-security"] == (
        "max-age=63072000"
    )


def test_access_log_is_json_with_upstream_address_and_timings(lb) -> None:
    marker = f"/api/log-check-{time.time_ns()}"
    probe(lb, "get", f"{LB_URL}{marker}")
    entry = access_log_line(lb, marker)
    assert entry["status"] == 200
    assert entry["remote_addr"] == "127.0.0.1"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:8000", entry["upstream_addr"])
    assert float(entry["upstream_response_time"]) >= 0
    assert float(entry["upstream_connect_time"]) >= 0
    assert isinstance(entry["request_time"], float)
    assert len(entry["request_id"]) == 32


def test_client_address_comes_from_the_trusted_proxy_header(lb) -> None:
    # The scenario trusts 127.0.0.1 as a proxy (nginx_lb_real_ip_from); a backend sees the client.
    marker = f"/api/whoami-{time.time_ns()}"
    seen = probe(lb, "get", f"{LB_URL}{marker}", "-H", "'X-Forwarded-For: 203.0.113.7'")["first"]["json"]
    assert seen["x_real_ip"] == "203.0.113.7"
    assert seen["x_forwarded_proto"] == "http"
    assert access_log_line(lb, marker)["remote_addr"] == "203.0.113.7"


def test_websocket_upgrade_gets_101_echoes_and_sticks_to_one_backend_per_client(lb, backend1, backend2) -> None:
    for client, url in ((lb, LB_URL), (backend1, LB_FROM_BACKENDS), (backend2, LB_FROM_BACKENDS)):
        result = probe(client, "ws", f"{url}/ws", "--message", "ping-through-lb", "--connections", "3")
        connections = result["connections"]
        assert [c["status"] for c in connections] == [101, 101, 101]
        assert all(c["accept_ok"] for c in connections)
        hosts = {c["echo"].split(":", 1)[0] for c in connections}
        assert len(hosts) == 1, hosts
        assert hosts <= set(BACKENDS)
        assert all(c["echo"].endswith(":ping-through-lb") for c in connections)
    conf = lb.file("/etc/nginx/conf.d/tutormax.conf").content_string
    ws = conf.split("location /ws {")[1].split("}")[0]
    assert "proxy_read_timeout 3600s;" in ws


# --------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("version", ["1_2", "1_3"])
def test_tls_handshake_works(lb, version: str) -> None:
    out = lb.check_output(f"echo | openssl s_client -connect 127.0.0.1:443 -tls{version} 2>&1")
    assert f"New, TLSv{version.replace('_', '.')}, Cipher is" in out
    assert probe(lb, "get", "https://127.0.0.1/api/items")["statuses"] == {"200": 1}


def test_tls_1_1_is_refused_by_the_server(lb) -> None:
    # SECLEVEL=0 lets Debian's OpenSSL offer TLS 1.1, so the refusal is the server's (alert 70).
    result = lb.run("echo | openssl s_client -connect 127.0.0.1:443 -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' 2>&1")
    assert result.rc != 0
    assert "alert protocol version" in result.stdout


def test_self_signed_certificate_names_the_lb_and_its_key_is_private(lb) -> None:
    key = lb.file("/etc/ssl/private/tutormax-lb.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    text = lb.check_output("openssl x509 -in /etc/ssl/certs/tutormax-lb.pem -noout -text")
    assert "DNS:lb-1" in text
    assert "IP Address:127.0.0.1" in text
    assert "ASN1 OID: prime256v1" in text


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_passes_rate_plus_burst_then_429_and_spares_other_clients(lb, backend1, backend2) -> None:
    # Earlier tests sent requests from backend1 through the LB (the WebSocket test, just before the
    # quick TLS ones): let its bucket drain first (one request leaks out every 60/rate seconds), or
    # the burst starts with less than burst + 1 free (seen: 20 passed on a fast run).
    time.sleep(5 * 60 / RATE_PER_MINUTE)
    burst = probe(backend1, "get", f"{LB_FROM_BACKENDS}/api/items", "-n", "150")
    passed = burst["statuses"].get("200", 0)
    refused = burst["statuses"].get("429", 0)
    # Leaky bucket: burst + 1 at once, then one more per 60/rate seconds while the loop runs.
    leaked = int(burst["elapsed"] * RATE_PER_MINUTE / 60)
    print(f"rate limit: {passed} passed, {refused} refused (429) of 150 in {burst['elapsed']:.2f}s")
    assert passed + refused == 150
    assert BURST + 1 <= passed <= BURST + 1 + leaked + 1
    other = probe(backend2, "get", f"{LB_FROM_BACKENDS}/api/items", "-n", "10")
    assert other["statuses"] == {"200": 10}
    allowlisted = probe(lb, "get", f"{LB_URL}/api/items", "-n", "150")
    assert allowlisted["statuses"] == {"200": 150}


# --------------------------------------------------------------------------- changes under load


def test_drained_backend_gets_no_request_and_no_request_fails(lb) -> None:
    # Drain lb-backend-2 and bring it back weighted 2, the way the rolling update will (delegated
    # upstream.yml), while lb-1 sends requests all along.
    stop_file = f"/tmp/drain-loop-{time.time_ns()}"  # noqa: S108 - inside the test container
    command = f"lbprobe loop {LB_URL}/api/items --seconds 110 --stop-file {stop_file}"
    loop = subprocess.Popen(["docker", "exec", "lb-1", *command.split()], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        drain_started = time.time()
        drain = playbook("backend_state.yml", "-e", "backend=lb-backend-2", "-e", '{"state": {"down": true}}')
        assert drain.returncode == 0, drain.stdout[-3000:]
        drained_at = time.time()
        lines = lb.check_output("grep -F '  # lb-backend-2' /etc/nginx/conf.d/tutormax-upstreams.conf")
        assert lines.count(" down;  # lb-backend-2") == 2  # in both upstreams
        drained = probe(lb, "get", f"{LB_URL}/api/items", "-n", "20")
        assert drained["hosts"] == {"lb-backend-1": 20}
        time.sleep(2)
        undrain_at = time.time()
        undrain = playbook("backend_state.yml", "-e", "backend=lb-backend-2", "-e", '{"state": {"weight": 2}}')
        assert undrain.returncode == 0, undrain.stdout[-3000:]
        time.sleep(1)
    finally:
        lb.run(f"touch {stop_file}")
        out, _ = loop.communicate(timeout=150)
    records = json.loads(out)["records"]
    failed = [r for r in records if r["status"] != 200]
    assert not failed, failed[:5]
    during = [r for r in records if drained_at <= r["t"] <= undrain_at]
    assert len(during) > 10
    assert {r["host"] for r in during} == {"lb-backend-1"}
    assert "lb-backend-2" in {r["host"] for r in records if r["t"] < drain_started}
    # Back in rotation with weight 2: two requests of three (one at a time, so least_conn ties and
    # the weighted round robin decides).
    after = probe(lb, "get", f"{LB_URL}/api/items", "-n", "60")
    assert after["statuses"] == {"200": 60}
    assert 34 <= after["hosts"].get("lb-backend-2", 0) <= 46, after["hosts"]


def given_certificate(tmp_path: Path) -> Path:
    """Extra-vars file with a certificate and key as the inventory would give them (from the vault)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GIVEN_CN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "given_certificate.json"
    path.write_text(
        json.dumps(
            {
                "nginx_lb_tls_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
                "nginx_lb_tls_private_key": pem_key.decode(),
            }
        )
    )
    return path


def served_certificate_subject(lb) -> str:
    return lb.check_output("echo | openssl s_client -connect 127.0.0.1:443 2>/dev/null | grep '^subject='")


def test_broken_config_is_refused_and_the_running_config_keeps_serving(lb, tmp_path: Path) -> None:
    # A broken directive, together with a new (valid) certificate: nothing of it may stay.
    files = ["/etc/nginx/conf.d/tutormax.conf", "/etc/ssl/certs/tutormax-lb.pem", "/etc/ssl/private/tutormax-lb.key"]
    before = {f: hashlib.sha256(lb.file(f).content).hexdigest() for f in files}
    workers = worker_pids(lb)
    broken = playbook(
        "converge.yml",
        "-e",
        '{"nginx_lb_extra_server_config": ["tutormax_broken_directive on;"]}',
        "-e",
        f"@{given_certificate(tmp_path)}",
    )
    assert broken.returncode != 0
    assert "tutormax_broken_directive" in broken.stdout
    assert "nginx.conf test failed" in broken.stdout
    assert "previous one put back" in broken.stdout
    assert {f: hashlib.sha256(lb.file(f).content).hexdigest() for f in files} == before
    assert lb.run("nginx -t").rc == 0
    assert lb.check_output("find /etc/nginx /etc/ssl -name '*~'") == ""
    # Same workers: nginx was never reloaded, and it still serves the old configuration.
    assert worker_pids(lb) == workers
    assert probe(lb, "get", f"{LB_URL}/api/items", "-n", "5")["statuses"] == {"200": 5}
    assert "CN = lb-1" in served_certificate_subject(lb)


def test_given_certificate_is_installed_and_served_after_a_reload(lb, tmp_path: Path) -> None:
    result = playbook("converge.yml", "-e", f"@{given_certificate(tmp_path)}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"CN = {GIVEN_CN}" in served_certificate_subject(lb)
    key = lb.file("/etc/ssl/private/tutormax-lb.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert lb.check_output("find /etc/nginx /etc/ssl -name '*~'") == ""


def test_stopped_backend_is_routed_around_without_a_failed_get(lb, backend1) -> None:
    backend1.run("systemctl stop tutormax-standin")
    try:
        result = probe(lb, "get", f"{LB_URL}/api/items", "-n", "30")
    finally:
        backend1.run("systemctl start tutormax-standin")
    assert result["statuses"] == {"200": 30}
    assert result["hosts"] == {"lb-backend-2": 30}
