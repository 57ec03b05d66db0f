"""The distribution spec's error codes, raised anywhere and answered in the spec's JSON form."""

from __future__ import annotations

from typing import Any

#: Each code's default HTTP status, as the spec's endpoint table and common practice give them.
DEFAULT_STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    # Not in the spec's table; the CNCF registry's code for a failure that is not the client's
    # (a pull-through cache whose remote fails answers it with 502).
    "UNKNOWN": 500,
}

MESSAGES = {
    "BLOB_UNKNOWN": "blob unknown to registry",
    "BLOB_UPLOAD_INVALID": "blob upload invalid",
    "BLOB_UPLOAD_UNKNOWN": "blob upload unknown to registry",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_BLOB_UNKNOWN": "manifest references a manifest or blob unknown to registry",
    "MANIFEST_INVALID": "manifest invalid",
    "MANIFEST_UNKNOWN": "manifest unknown to registry",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "SIZE_INVALID": "provided length did not match content length",
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "UNSUPPORTED": "the operation is unsupported",
    "TOOMANYREQUESTS": "too many requests",
    "UNKNOWN": "unknown error",
}


class RegistryError(Exception):
    """One spec error: ``code`` from the spec's table, an HTTP ``status``, a message, a detail.

    ``headers`` are added to the response (``Location``/``Range`` on a 416, a challenge on 401).
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in DEFAULT_STATUS:
            raise ValueError(f"unknown registry error code {code!r}")
        self.code = code
        self.message = message or MESSAGES[code]
        self.detail = detail
        self.status = status or DEFAULT_STATUS[code]
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}
