"""Celery worker and beat: ``tutormax.worker.app`` (``celery -A tutormax.worker``).

Tasks are thin: each opens the data resources, runs one service coroutine, and closes them again.
"""

from tutormax.worker.app import app

__all__ = ["app"]
