"""What a failed exchange with a registry becomes: an Engine API error with dockerd's words.

dockerd 20.10 answers a failed login with 500 and Go's error text, which clients show as they
are (``Error response from daemon: ...``); we give the same status and, where the cause is
the same, the same text (``tests/distribution/test_login_interop.py`` compares them):

* the registry refused the credentials: ``login attempt to http://HOST/v2/ failed with
  status: 401 Unauthorized``;
* a request could not be made, or its authorization failed: Go's ``url.Error`` form,
  ``Get "http://HOST/v2/": REASON``, REASON being the dial error
  (``dial tcp HOST: connect: connection refused``), ``no basic auth credentials``, or what
  the token server said (``unauthorized: invalid credentials``).

A registry's error body (``{"errors": [{"code", "message"}]}``) reads as distribution's client
renders it: ``manifest unknown: manifest unknown``.
"""

from __future__ import annotations

import http
import json
import socket
import ssl
from collections.abc import Iterable

from dockyard.core.errors import DockyardError
from dockyard.distribution.challenges import is_scheme, read_challenges


class RegistryError(DockyardError):
    """An exchange with a registry failed (dockerd's status: 500)."""


class RegistryUnauthorized(RegistryError):
    """The registry or its token server refused the credentials in a way dockerd answers
    with 401 (an ``UNAUTHORIZED`` error code)."""

    status_code = 401


class NoBasicCredentials(Exception):
    """A ``Basic`` challenge, and no username and password to answer it with."""

    def __str__(self) -> str:
        return "no basic auth credentials"


#: distribution's error codes and the message it uses when a registry sends none.
ERROR_CODE_MESSAGES = {
    "UNKNOWN": "unknown error",
    "UNSUPPORTED": "The operation is unsupported.",
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "UNAVAILABLE": "service unavailable",
    "TOOMANYREQUESTS": "too many requests",
    "BLOB_UNKNOWN": "blob unknown to registry",
    "BLOB_UPLOAD_INVALID": "blob upload invalid",
    "BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_BLOB_UNKNOWN": "blob unknown to registry",
    "MANIFEST_INVALID": "manifest invalid",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "MANIFEST_UNVERIFIED": "manifest failed signature verification",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "SIZE_INVALID": "provided length did not match content length",
    "TAG_INVALID": "manifest tag did not match URI",
    "PAGINATION_NUMBER_INVALID": "invalid number of results requested",
    "RANGE_INVALID": "invalid content range",
}


def request_failed(method: str, url: str, reason: object) -> str:
    """Go's ``url.Error`` text: ``Get "http://host/v2/": reason``."""
    return f'{method.capitalize()} "{url}": {reason}'


def status_text(status: int) -> str:
    """``401 Unauthorized``, as Go's ``http.StatusText`` names a status."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error_code_text(code: str, message: str) -> str:
    known = code if code in ERROR_CODE_MESSAGES else "UNKNOWN"
    return f"{known.lower().replace('_', ' ')}: {message or ERROR_CODE_MESSAGES[known]}"


def describe_error_response(
    status: int, www_authenticate: Iterable[str], body: bytes
) -> tuple[str, bool]:
    """A registry's (or token server's) error answer as distribution's client words it, and
    whether it is an ``UNAUTHORIZED`` that dockerd passes on as 401."""
    if not 400 <= status < 500:
        return f"received unexpected HTTP status: {status_text(status)}", False
    texts = []
    # RFC 6750's error in a Bearer challenge comes first, then the body's errors.
    for challenge in read_challenges(www_authenticate):
        error = challenge.params.get("error")
        if is_scheme(challenge, "bearer") and error in ("invalid_token", "insufficient_scope"):
            code = "UNAUTHORIZED" if error == "invalid_token" else "DENIED"
            texts.append(_error_code_text(code, challenge.params.get("error_description", "")))
            break
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("details"), str):
        code = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}.get(status, "UNKNOWN")
        texts.append(_error_code_text(code, document["details"]))
    elif isinstance(document, dict) and isinstance(document.get("errors"), list):
        for error in document["errors"]:
            if isinstance(error, dict):
                name, message = error.get("code"), error.get("message")
                texts.append(
                    _error_code_text(
                        name if isinstance(name, str) else "UNKNOWN",
                        message if isinstance(message, str) else "",
                    )
                )
    if not texts:
        if status == 401:  # an unreadable 401: distribution's client calls it UNAUTHORIZED
            return _error_code_text("UNAUTHORIZED", ""), True
        shown = body[:200].decode(errors="replace")
        return f"error parsing HTTP {status} response body: {shown!r}", False
    if len(texts) == 1:
        return texts[0], False
    return "errors:\n" + "".join(f"{text}\n" for text in texts), False


#: OpenSSL's verify codes for "no chain to a trusted CA" (Go: "signed by unknown authority").
_UNKNOWN_AUTHORITY = frozenset({2, 18, 19, 20, 21})


def transport_reason(exc: BaseException, host: str) -> str:
    """Why a request could not be made, in Go's words where the cause is one Go names alike
    (a refused connection, a name that does not resolve, a plain-HTTP server on HTTPS)."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {host}: connect: connection refused"
        if isinstance(cause, socket.gaierror):
            return f"dial tcp: lookup {host.rpartition(':')[0] or host}: no such host"
        if isinstance(cause, ssl.SSLCertVerificationError):
            if cause.verify_code in _UNKNOWN_AUTHORITY:
                return "x509: certificate signed by unknown authority"
            return f"x509: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError) and cause.reason in (
            "WRONG_VERSION_NUMBER",
            "RECORD_LAYER_FAILURE",
            "HTTP_REQUEST",
        ):
            return "tls: first record does not look like a TLS handshake"
        if isinstance(cause, ssl.SSLError) and "_ALERT_" in (cause.reason or ""):
            # The server refused us (no or a wrong client certificate, say).
            alert = cause.reason.partition("_ALERT_")[2].lower().replace("_", " ")
            return f"remote error: tls: {alert}"
        if isinstance(cause, TimeoutError | socket.timeout):
            return f"dial tcp {host}: i/o timeout"
    name = type(exc).__name__
    text = str(exc)
    if "Timeout" in name:
        return f"timeout ({name}){': ' + text if text else ''}"
    return text or name


def _causes(exc: BaseException) -> list[BaseException]:
    chain = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
