"""TutorMax: tutor performance tracking, built so that any instance can serve any request.

Layers (imports only go downwards): ``api`` and ``worker`` (entry points) -> ``services``
-> ``data`` (PostgreSQL, Redis, broker, SMTP) -> ``domain`` and ``settings``.
"""

from importlib.resources import files

#: The version this copy was built as: the wheel's ``tutormax/VERSION`` is written by the build
#: (``TUTORMAX_VERSION`` overrides the source tree's file), so it always matches the metadata.
__version__: str = files(__name__).joinpath("VERSION").read_text(encoding="utf-8").strip()

__all__ = ["__version__"]
