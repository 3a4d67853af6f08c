"""Data access: PostgreSQL (primary and replica), Redis (cache, pub/sub), the broker and SMTP.

Nothing here imports from ``tutormax.services``, ``tutormax.api`` or ``tutormax.worker``.
"""
