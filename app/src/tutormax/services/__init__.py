"""Use cases: what TutorMax does, independent of HTTP and Celery.

Services take a ``Resources`` (from ``tutormax.data``) and domain models, and raise the errors in
``tutormax.services.errors``. They never import from ``tutormax.api`` or ``tutormax.worker``.
"""
