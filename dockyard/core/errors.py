"""Errors shared by the core and plugins.

Each carries the HTTP status the Engine API answers with, so handlers can raise them from any depth
and the app turns them into ``{"message": ...}`` responses.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base class: an error with a user-facing message and an HTTP status."""

    status_code = 500

    @property
    def message(self) -> str:
        return str(self)


class InvalidParameter(DockyardError):
    status_code = 400


class Unauthorized(DockyardError):
    status_code = 401


class InvalidCredentials(Unauthorized):
    """Credentials were given and are wrong: a bad password, an unknown user, a token that is
    forged, expired, not yet valid, for another service or from another issuer.

    ``subject`` is the user name the credentials claimed, when there was one: the registry counts
    failures per user and per address for its rate limits. The text is safe to log: it never
    holds a secret.
    """

    def __init__(self, reason: str, subject: str = "") -> None:
        super().__init__(reason)
        self.subject = subject


class Forbidden(DockyardError):
    status_code = 403


class NotFound(DockyardError):
    status_code = 404


class Conflict(DockyardError):
    status_code = 409


class RequestTimeout(DockyardError):
    """The client stopped sending a request body it had started (the servers' body read
    timeout); the connection is closed after the answer."""

    status_code = 408


class NotImplementedYet(DockyardError):
    status_code = 501


class Unavailable(DockyardError):
    status_code = 503


class ConfigError(DockyardError):
    """The configuration cannot be used. The message is one line naming the key and the file."""


class PluginError(DockyardError):
    """Plugins cannot be assembled as configured (conflicting names, a required plugin missing)."""


class DriverUnavailable(Exception):
    """Raised by a driver's ``check`` when it cannot work on this machine; the text is the reason.

    The plugin then shows status ``skip`` with that reason, and auto-selection passes over it.
    """
