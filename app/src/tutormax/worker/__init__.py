"""Celery worker and beat: the app is ``tutormax.worker.app`` (``celery -A tutormax.worker``).

Tasks are thin: each opens the data resources, runs one service coroutine, and closes them again.
The Celery app is built from the environment on first access, so importing this package (or its
schedule) needs no configuration.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from tutormax.worker.app import app

        return app
    raise AttributeError(name)
