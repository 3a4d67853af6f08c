"""Errors a service raises; the HTTP layer maps each to one status code."""


class ServiceError(Exception):
    """Base class; the message is safe to show to the caller."""


class NotFoundError(ServiceError):
    """The named resource does not exist (404)."""


class ConflictError(ServiceError):
    """The request contradicts the current state (409)."""


class UnavailableError(ServiceError):
    """A dependency (database, broker) cannot be reached right now (503)."""
