"""Logging: one line per record on stderr (journald adds the timestamp on the hosts)."""

from __future__ import annotations

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Logger of the API's access lines, one per HTTP request (tutormax.api.observability).
ACCESS_LOGGER = "tutormax.access"


def configure_logging(level: str) -> None:
    """Configure the root logger once; later calls only change the level."""
    root = logging.getLogger()
    if not any(getattr(h, "_tutormax", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._tutormax = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # Connection-level chatter from the drivers is noise at INFO.
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))
    # Access lines are INFO records with a level of their own: ACCESS_LOG switches them, not
    # LOG_LEVEL. LOG_LEVEL=WARNING (a quieter app) must not also drop the one line that ties a
    # request to the load balancer's X-Request-ID; records propagate to the root handler above,
    # which has no level, so the root logger's level does not filter them.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
