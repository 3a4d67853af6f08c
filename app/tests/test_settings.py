"""Settings: what the environment must hold, what is derived, and how bad input is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import unquote

import pytest

from harness import APP_SRC
from tutormax.data.taskqueue import (
    FAILOVER_RETRY,
    MAX_HARD_TIME_LIMIT,
    TIME_LIMITS,
    VISIBILITY_TIMEOUT,
    celery_config,
)
from tutormax.settings import Settings, SettingsError, load_settings

BASE = {
    "DATABASE_URL": "postgresql://tutormax:pg-secret@db1:5432/tutormax",
    "REDIS_SENTINELS": "10.0.0.5:26379,10.0.0.6:26379,10.0.0.7",
    "REDIS_USERNAME": "tutormax",
    "REDIS_PASSWORD": "redis-secret/with:odd@chars",
    "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean environment holding BASE; tests add or remove variables."""
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "REDIS_", "CELERY_", "SMTP_", "API_", "WORKER", "BIND", "ACCESS_LOG")):
            monkeypatch.delenv(name)
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    return dict(BASE)


def test_defaults_read_replica_falls_back_to_primary_and_master_name(env: dict[str, str]) -> None:
    s = load_settings()
    assert s.replica_dsn is None
    assert s.redis_master_name == "tutormax-master"
    assert s.bind == "0.0.0.0:8000"
    assert [(a.host, a.port) for a in s.sentinels] == [("10.0.0.5", 26379), ("10.0.0.6", 26379), ("10.0.0.7", 26379)]


def test_missing_database_url_names_the_setting(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(SettingsError, match=r"DATABASE_URL: is required but not set"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKERS", "many", "WORKERS"),
        ("WORKERS", "0", "WORKERS"),
        ("DATABASE_URL", "mysql://u:pg-secret@h/db", "DATABASE_URL: must be a postgresql:// URL"),
        ("REDIS_SENTINELS", "host-without-port:abc", "REDIS_SENTINELS"),
        ("BIND", "nonsense", "BIND"),
        ("SMTP_PORT", "70000", "SMTP_PORT"),
        ("CELERY_BROKER_URL", "amqp://guest@rabbit//", "CELERY_BROKER_URL"),
        ("WORKER_METRICS_PORT", "0", "WORKER_METRICS_PORT"),
        ("WORKER_METRICS_BIND", "metrics.example", "WORKER_METRICS_BIND: must be an IP address"),
        ("WORKER_INSTANCE", "worker1", "WORKER_INSTANCE"),
        ("ACCESS_LOG", "sometimes", "ACCESS_LOG"),
    ],
)
def test_bad_value_is_reported_by_name_without_its_value(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "pg-secret" not in str(caught.value)


def test_empty_database_url_counts_as_missing(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    with pytest.raises(SettingsError, match=r"DATABASE_URL: is required but not set"):
        load_settings()


def test_worker_metrics_port_is_per_instance_and_off_by_default(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().worker_metrics_address is None
    assert load_settings().access_log is True
    monkeypatch.setenv("WORKER_METRICS_PORT", "9808")
    assert load_settings().worker_metrics_address == ("127.0.0.1", 9808)
    # What the templated unit tutormax-worker@3 passes: the host's address, its instance number.
    monkeypatch.setenv("WORKER_INSTANCE", "3")
    monkeypatch.setenv("WORKER_METRICS_BIND", "10.0.0.7")
    assert load_settings().worker_metrics_address == ("10.0.0.7", 9810)
    monkeypatch.setenv("WORKER_METRICS_BIND", "[::]")
    assert load_settings().worker_metrics_address == ("::", 9810)
    monkeypatch.setenv("WORKER_METRICS_PORT", "")
    assert load_settings().worker_metrics_address is None
    monkeypatch.setenv("WORKER_METRICS_PORT", "65535")
    with pytest.raises(SettingsError, match=r"WORKER_METRICS_PORT \+ WORKER_INSTANCE - 1 is above 65535"):
        load_settings()
    monkeypatch.setenv("ACCESS_LOG", "false")
    monkeypatch.setenv("WORKER_METRICS_PORT", "9808")
    assert load_settings().access_log is False


def test_redis_url_and_sentinels_together_are_refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    with pytest.raises(SettingsError, match="REDIS_SENTINELS and REDIS_URL are both set"):
        load_settings()


def test_no_redis_at_all_is_refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SENTINELS")
    with pytest.raises(SettingsError, match="REDIS_SENTINELS or REDIS_URL"):
        load_settings()


def test_celery_urls_are_derived_for_sentinel_with_acl_user_and_transport_options(env: dict[str, str]) -> None:
    s = load_settings()
    chunks = s.broker_url.split(";")
    assert len(chunks) == 3
    assert chunks[0].startswith("sentinel://tutormax:")
    assert chunks[0].endswith("@10.0.0.5:26379/0")
    # The password is URL-quoted, and unquotes to the original.
    assert unquote(chunks[0].split("://tutormax:")[1].rsplit("@", 1)[0]) == BASE["REDIS_PASSWORD"]
    assert s.result_backend_url == s.broker_url
    conf = celery_config(s)
    for key in ("broker_transport_options", "result_backend_transport_options"):
        assert conf[key]["master_name"] == "tutormax-master"
        assert conf[key]["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT > MAX_HARD_TIME_LIMIT


def _retry_window(policy: dict[str, float]) -> float:
    """Seconds a kombu retry policy keeps trying: the sum of its waits."""
    waits = [policy["interval_start"] + i * policy["interval_step"] for i in range(int(policy["max_retries"]))]
    return sum(min(w, policy["interval_max"]) for w in waits)


def test_celery_retries_outlast_a_sentinel_failover(env: dict[str, str]) -> None:
    # The redis role's Sentinels declare a master down after 3 s (redis_sentinel_down_after_ms) and
    # promote a replica within about a second; the new master refuses writes until a replica follows
    # it. Sends (the API's, beat's), broker connections and result writes keep trying for longer.
    conf = celery_config(load_settings())
    policies = {
        "publish": conf["task_publish_retry_policy"],
        "broker connection": conf["broker_transport_options"],
        "result backend": conf["result_backend_transport_options"]["retry_policy"],
    }
    for what, policy in policies.items():
        assert _retry_window(policy) >= 3 + 5, f"{what}: {_retry_window(policy):.1f} s"
    assert _retry_window(FAILOVER_RETRY) == pytest.approx(12.0)
    # An error reply of the broker (NOREPLICAS, READONLY, UNBLOCKED) reconnects instead of ending the worker.
    assert conf["broker_channel_error_retry"] is True
    assert conf["broker_connection_max_retries"] is None


def test_celery_urls_follow_plain_redis_url(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SENTINELS")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")
    s = load_settings()
    assert s.broker_url.startswith("redis://tutormax:")
    assert s.broker_url.endswith("@cache.internal:6379/2")
    assert "master_name" not in celery_config(s)["broker_transport_options"]


def test_explicit_celery_urls_win(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "sentinel://:x@s1:26379/3")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://r:6379/4")
    s = load_settings()
    assert s.broker_url == "sentinel://:x@s1:26379/3"
    assert celery_config(s)["broker_transport_options"]["master_name"] == "tutormax-master"
    assert "master_name" not in celery_config(s)["result_backend_transport_options"]


def test_redacted_settings_hide_every_secret(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-secret")
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://tutormax:pg-secret@db2:5432/tutormax")
    text = repr(load_settings().redacted()) + repr(load_settings())
    for secret in ("pg-secret", "redis-secret", "sentinel-secret", "smtp-secret"):
        assert secret not in text


def test_every_task_has_a_hard_limit_below_the_published_maximum() -> None:
    assert all(soft < hard <= MAX_HARD_TIME_LIMIT for soft, hard in TIME_LIMITS.values())
    assert MAX_HARD_TIME_LIMIT == 600


@pytest.mark.parametrize("command", ["api", "worker", "beat"])
def test_entry_point_with_bad_environment_exits_2_with_one_line_naming_the_setting(command: str) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(APP_SRC), "REDIS_URL": "redis://localhost:1/0", "WORKERS": "x"}
    done = subprocess.run(
        [sys.executable, "-m", "tutormax", command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "DATABASE_URL: is required but not set" in done.stderr
    assert "WORKERS" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_without_database_url_exits_2_naming_it() -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(APP_SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "tutormax", "migrate"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_class_documents_every_variable_in_the_readme() -> None:
    readme = (APP_SRC.parent / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert not missing, f"undocumented in app/README.md: {missing}"


#: The URL forms the deployment writes for Patroni: every PostgreSQL host, the same order everywhere.
PATRONI_WRITE = "postgresql://tutormax:pg-secret@10.0.0.5:5432,10.0.0.6:5432/tutormax?target_session_attrs=read-write"
PATRONI_READ = "postgresql://tutormax:pg-secret@10.0.0.5:5432,10.0.0.6:5432/tutormax?target_session_attrs=standby"


def test_multi_host_urls_are_accepted_and_redacted_for_every_host_form(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", PATRONI_WRITE)
    monkeypatch.setenv("DATABASE_READ_URL", PATRONI_READ)
    s = load_settings()
    assert s.primary_dsn == PATRONI_WRITE
    assert s.replica_dsn == PATRONI_READ
    redacted = s.redacted()
    assert "10.0.0.5,10.0.0.6" in redacted["database_url"]
    assert "target_session_attrs=standby" in redacted["database_read_url"]
    for url in (
        "postgresql://tutormax:pg-secret@[fd00::5]:5432,[fd00::6]:5432/tutormax?target_session_attrs=read-write",
        "postgresql://tutormax@10.0.0.5,10.0.0.6/tutormax?target_session_attrs=read-write&password=pg-secret",
        "postgresql://tutormax:pg%40secret@db1/tutormax?sslpassword=pg-secret",
        "postgresql://tutormax@/tutormax?host=/run/postgresql&password=pg-secret",
    ):
        monkeypatch.setenv("DATABASE_URL", url)
        text = repr(load_settings().redacted())
        for secret in ("pg-secret", "pg@secret", "pg%40secret"):
            assert secret not in text, url


def test_a_read_url_libpq_reads_as_the_write_url_means_no_replica(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", PATRONI_WRITE)
    for same in (PATRONI_WRITE, PATRONI_WRITE.replace("postgresql://", "postgres://"), f"  {PATRONI_WRITE} "):
        monkeypatch.setenv("DATABASE_READ_URL", same)
        assert load_settings().replica_dsn is None, same


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "postgresql://tutormax:pg-secret@db1,db2/tutormax", "target_session_attrs=read-write"),
        (
            "DATABASE_READ_URL",
            "postgresql://tutormax:pg-secret@db1,db2/tutormax?target_session_attrs=any",
            "target_session_attrs=standby",
        ),
        (
            "DATABASE_READ_URL",
            "postgresql://tutormax:pg-secret@db1,db2/tutormax?target_session_attrs=prefer-standby",
            "not prefer-standby",
        ),
        ("DATABASE_URL", "postgresql://tutormax:pg-secret@db1/tutormax?pg-secret=1", "not a URL libpq can read"),
    ],
)
def test_multi_host_urls_that_could_reach_the_wrong_server_are_refused_without_echoing_them(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{name}: " in str(caught.value)
    assert message in str(caught.value)
    assert "pg-secret" not in str(caught.value)
