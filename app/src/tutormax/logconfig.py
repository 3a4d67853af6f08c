"""Logging: one line per record on stderr (journald adds the timestamp on the hosts)."""

from __future__ import annotations

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"


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
