"""Every setting of the API, the worker and beat, read from the environment in one place.

``load_settings()`` is the only way in: it turns pydantic's validation errors into a
``SettingsError`` whose message names each bad setting without echoing its value (values may be
secrets). Entry points print that message and exit with status 2, so a bad
``/etc/tutormax/tutormax.env`` stops start-up with one readable line per problem.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Redis database number shared by the cache, pub/sub, the Celery broker and results. One
#: database keeps the Redis ACL simple; key prefixes keep the users apart.
DEFAULT_REDIS_DB = 0


class SettingsError(Exception):
    """Raised when the environment does not hold a usable configuration."""


@dataclass(frozen=True)
class SentinelAddress:
    """One Redis Sentinel, as given in ``REDIS_SENTINELS``."""

    host: str
    port: int


def _parse_host_port(item: str, default_port: int) -> SentinelAddress:
    host, sep, port_text = item.strip().rpartition(":")
    if not sep:
        host, port_text = item.strip(), str(default_port)
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{item.strip()!r} has no host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{item.strip()!r} has no valid port")
    return SentinelAddress(host, int(port_text))


class Settings(BaseSettings):
    """TutorMax configuration; each field is the environment variable of the same name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", hide_input_in_errors=True)

    # PostgreSQL
    database_url: SecretStr = Field(description="Primary (read/write), postgresql://user:pass@host:5432/tutormax")
    database_read_url: SecretStr | None = Field(None, description="Replica (read-only); defaults to DATABASE_URL")
    database_pool_min_size: int = Field(1, ge=0, le=100)
    database_pool_max_size: int = Field(10, ge=1, le=500)
    database_pool_timeout: float = Field(5.0, gt=0, le=120, description="Seconds to wait for a pooled connection")
    database_connect_timeout: int = Field(3, ge=2, le=60, description="libpq connect_timeout, seconds")
    database_statement_timeout_ms: int = Field(15000, ge=0, le=3_600_000)

    # Redis: either Sentinel (REDIS_SENTINELS) or one server (REDIS_URL)
    redis_sentinels: str | None = None
    redis_master_name: str = "tutormax-master"
    redis_url: SecretStr | None = None
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_sentinel_password: SecretStr | None = None
    redis_db: int = Field(DEFAULT_REDIS_DB, ge=0, le=15)
    redis_socket_timeout: float = Field(0.5, gt=0, le=30)

    # Celery (derived from the Redis settings when unset)
    celery_broker_url: SecretStr | None = None
    celery_result_backend: SecretStr | None = None
    celery_worker_concurrency: int = Field(2, ge=1, le=64)
    celery_beat_schedule_file: str = "celerybeat-schedule"
    # Beat may run on several hosts: one holds a lock in Redis (RedBeat) and schedules; the others
    # wait for it. A lost holder's lock expires after this many seconds; another beat then takes
    # over within about one more loop (this / 5).
    celery_beat_lock_timeout: int = Field(25, ge=5, le=3600)
    # Seconds between two runs of the heartbeat task (a row per run in beat_heartbeats, naming the
    # beat that sent it); 0 leaves it out of the schedule.
    celery_beat_heartbeat_seconds: int = Field(60, ge=0, le=86400)
    # Prometheus metrics of a worker, served by its main process (tutormax.worker.observability).
    # Instance N of the templated unit (WORKER_INSTANCE=N) listens on WORKER_METRICS_PORT + N - 1,
    # so one environment file serves every instance of a host; no port, no server.
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_bind: str = "127.0.0.1"
    worker_instance: int | None = Field(None, ge=1, le=1000)

    # Serving
    api_instance_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    workers: int = Field(2, ge=1, le=64)
    bind: str = "0.0.0.0:8000"
    graceful_timeout: int = Field(30, ge=1, le=3600)
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One line per HTTP request on logger tutormax.access, whatever LOG_LEVEL says (see logconfig).
    access_log: bool = True
    health_timeout_seconds: float = Field(0.5, gt=0, le=10)
    cache_ttl_seconds: int = Field(60, ge=1, le=86400)
    prometheus_multiproc_dir: str | None = None

    # SMTP (score-drop emails)
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "tutormax@localhost"
    smtp_starttls: bool = False
    smtp_timeout: float = Field(10.0, gt=0, le=120)

    # Exports and scores
    export_retention_hours: int = Field(24, ge=1, le=24 * 365)
    export_max_rows: int = Field(100_000, ge=1, le=10_000_000)
    score_drop_threshold: float = Field(5.0, ge=0, le=100)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _required_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is required but not set")
        return value

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.split("+")[0] not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgresql:// URL")
        # libpq does not know SQLAlchemy's driver suffix (postgresql+psycopg://).
        url = f"postgresql://{rest}"
        params = _conninfo(url)
        hosts = _hosts(params)
        if not hosts:
            raise ValueError("must name a host")
        ports = params.get("port", "").split(",")
        if len(ports) > 1 and len(ports) != len(hosts):
            raise ValueError(f"lists {len(hosts)} hosts but {len(ports)} ports: give one port, or one per host")
        attrs = params.get("target_session_attrs", "any")
        if info.field_name == "database_url" and len(hosts) > 1 and attrs not in WRITE_SESSION_ATTRS:
            raise ValueError("lists several hosts: add ?target_session_attrs=read-write so writes reach the leader")
        if info.field_name == "database_read_url" and attrs == "prefer-standby":
            raise ValueError(
                "use ?target_session_attrs=standby, not prefer-standby: when no standby answers, the app reads "
                "through DATABASE_URL itself"
            )
        # A read URL naming the leader (read-write) is allowed: equal to DATABASE_URL, it means "no replica".
        if info.field_name == "database_read_url" and len(hosts) > 1 and attrs not in {"standby", *WRITE_SESSION_ATTRS}:
            raise ValueError("lists several hosts: add ?target_session_attrs=standby so reads go to a standby")
        return SecretStr(url)

    @field_validator(
        "database_read_url",
        "redis_url",
        "celery_broker_url",
        "celery_result_backend",
        "worker_metrics_port",
        "worker_instance",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_sentinels", "redis_username", "smtp_user", mode="before")
    @classmethod
    def _empty_text_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_password", "redis_sentinel_password", "smtp_password", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value else value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_list(cls, value: str | None) -> str | None:
        if value is not None:
            for item in value.split(","):
                _parse_host_port(item, 26379)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {"redis", "rediss"}:
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("celery_broker_url", "celery_result_backend")
    @classmethod
    def _celery_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            schemes = {urlsplit(chunk.strip()).scheme for chunk in value.get_secret_value().split(";")}
            if not schemes <= {"redis", "rediss", "sentinel"}:
                raise ValueError("must be redis://, rediss:// or sentinel:// URLs")
        return value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        if value.startswith("unix:"):
            return value
        _parse_host_port(value, 8000)
        if ":" not in value:
            raise ValueError("must be HOST:PORT or unix:PATH")
        return value

    @field_validator("worker_metrics_bind")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip().strip("[]")))
        except ValueError:
            raise ValueError("must be an IP address, e.g. 127.0.0.1, 0.0.0.0 or ::") from None

    @field_validator("smtp_from")
    @classmethod
    def _smtp_from(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an email address")
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_sentinels and self.redis_url:
            raise ValueError("REDIS_SENTINELS and REDIS_URL are both set: set exactly one")
        if not self.redis_sentinels and not self.redis_url:
            raise ValueError("REDIS_SENTINELS or REDIS_URL: one of them must be set")
        if self.database_pool_min_size > self.database_pool_max_size:
            raise ValueError("DATABASE_POOL_MIN_SIZE is larger than DATABASE_POOL_MAX_SIZE")
        address = self.worker_metrics_address
        if address is not None and address[1] > 65535:
            raise ValueError("WORKER_METRICS_PORT + WORKER_INSTANCE - 1 is above 65535")
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def worker_metrics_address(self) -> tuple[str, int] | None:
        """(address, port) a worker serves its metrics on: WORKER_METRICS_PORT, plus WORKER_INSTANCE - 1
        for instance N of a templated unit; None without WORKER_METRICS_PORT."""
        if self.worker_metrics_port is None:
            return None
        return self.worker_metrics_bind, self.worker_metrics_port + (self.worker_instance or 1) - 1

    @property
    def sentinels(self) -> list[SentinelAddress]:
        """The Sentinels from ``REDIS_SENTINELS`` (empty when ``REDIS_URL`` is used)."""
        if not self.redis_sentinels:
            return []
        return [_parse_host_port(item, 26379) for item in self.redis_sentinels.split(",") if item.strip()]

    @property
    def primary_dsn(self) -> str:
        """libpq URL of the primary."""
        return self.database_url.get_secret_value()

    @property
    def replica_dsn(self) -> str | None:
        """libpq URL of the replica, or None when reads go to the primary too.

        "The same" is decided on what libpq reads from the two URLs (hosts, ports, user, database,
        options), so ``postgres://`` against ``postgresql://`` or a reordered query string still
        means one server, not a replica.
        """
        if self.database_read_url is None:
            return None
        url = self.database_read_url.get_secret_value()
        return None if _conninfo(url) == _conninfo(self.primary_dsn) else url

    def _redis_userinfo(self) -> str:
        user = quote(self.redis_username or "", safe="")
        password = quote(self.redis_password.get_secret_value(), safe="") if self.redis_password else ""
        if not user and not password:
            return ""
        return f"{user}:{password}@" if password else f"{user}@"

    def redbeat_redis(self) -> tuple[str, dict[str, Any]]:
        """RedBeat's ``redbeat_redis_url`` and ``redbeat_redis_options``: its schedule and its lock
        in the Redis the Sentinels name master (or in ``REDIS_URL``), as the app's ACL user."""
        if not self.redis_sentinels:
            return self._derived_celery_url(), {"socket_timeout": self.redis_socket_timeout}
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        if self.redis_sentinel_password is not None:
            sentinel_kwargs["password"] = self.redis_sentinel_password.get_secret_value()
        options: dict[str, Any] = {
            "sentinels": [(s.host, s.port) for s in self.sentinels],
            "service_name": self.redis_master_name,
            "db": self.redis_db,
            "socket_timeout": self.redis_socket_timeout,
            "sentinel_kwargs": sentinel_kwargs,
        }
        if self.redis_username:
            options["username"] = self.redis_username
        if self.redis_password is not None:
            options["password"] = self.redis_password.get_secret_value()
        return "redis-sentinel://", options

    def _derived_celery_url(self) -> str:
        if self.redis_sentinels:
            userinfo = self._redis_userinfo()
            return ";".join(f"sentinel://{userinfo}{s.host}:{s.port}/{self.redis_db}" for s in self.sentinels)
        assert self.redis_url is not None
        parts = urlsplit(self.redis_url.get_secret_value())
        if self.redis_username or self.redis_password:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=self._redis_userinfo() + host)
        return parts.geturl()

    @property
    def broker_url(self) -> str:
        """Celery broker URL: ``CELERY_BROKER_URL`` or derived from the Redis settings."""
        if self.celery_broker_url is not None:
            return self.celery_broker_url.get_secret_value()
        return self._derived_celery_url()

    @property
    def result_backend_url(self) -> str:
        """Celery result backend URL: ``CELERY_RESULT_BACKEND`` or derived from the Redis settings."""
        if self.celery_result_backend is not None:
            return self.celery_result_backend.get_secret_value()
        return self._derived_celery_url()

    def redacted(self) -> dict[str, Any]:
        """The settings without secrets, for a start-up log line."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = None if value is None else "**********"
            else:
                out[name] = value
        out["database_url"] = _redact_url(self.primary_dsn)
        out["database_read_url"] = _redact_url(self.replica_dsn) if self.replica_dsn else None
        return out


#: ``target_session_attrs`` values that let libpq accept only a server that takes writes.
WRITE_SESSION_ATTRS = frozenset({"read-write", "primary"})


def _conninfo(url: str) -> dict[str, str]:
    """What libpq reads from ``url`` (its own parser, so multi-host and IPv6 forms mean what libpq says)."""
    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending part, which may hold the password: say less.
        raise ValueError("is not a URL libpq can read (URL-encode special characters in the password)") from None


def _hosts(params: dict[str, str]) -> list[str]:
    """The hosts of a libpq connection string: ``host`` (or ``hostaddr``), comma-separated."""
    value = params.get("host") or params.get("hostaddr") or ""
    return value.split(",") if value else []


def _redact_url(url: str) -> str:
    """``url`` as libpq reads it, every password-like parameter (``password``, ``sslpassword``) masked.

    Built from libpq's parse, not from the text: a password in the query string, an unencoded
    ``@`` or a multi-host list cannot leave a secret in a log line or a settings dump.
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unreadable URL>"
    return make_conninfo("", **{key: "***" if "password" in key else value for key, value in params.items()})


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; raise SettingsError naming every bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            location = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required but not set"
            problems.append(f"{location}: {message}" if location else message)
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
