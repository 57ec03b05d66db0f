"""The PEM files a TLS context is built from, checked one at a time.

``ssl`` reports a bad certificate, a key that is not the certificate's, or an encrypted key as
``[SSL] PEM lib``, without saying which file; and an encrypted key makes OpenSSL ask for its
passphrase on the terminal. Checking each file first turns each of these into a one-line error
naming the flag or config key that gave the file.

The client uses this too, so it is standard library only, and ``ssl`` is imported by the
functions that take a context (only a TLS connection loads it). Errors are ``ValueError`` with
a message fit for the user, as :func:`dockyard.core.hosts.parse_host` raises them.
"""

from __future__ import annotations

from typing import Any

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"
#: PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") and the older OpenSSL form ("Proc-Type: 4,ENCRYPTED").
_ENCRYPTED = b"ENCRYPTED"


def read_pem(path: str, what: str) -> bytes:
    """The file's bytes; ``what`` names it in the error (``"--tlscert /x/cert.pem"``)."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"cannot read {what}: {exc.strerror}") from None


def load_cert_chain(context: Any, cert: str, key: str, cert_what: str, key_what: str) -> None:
    """Load a certificate (chain) and its private key into the ``ssl.SSLContext``."""
    import ssl

    if _CERTIFICATE not in read_pem(cert, cert_what):
        raise ValueError(f"{cert_what} holds no PEM certificate")
    key_text = read_pem(key, key_what)
    if _PRIVATE_KEY not in key_text:
        raise ValueError(f"{key_what} holds no PEM private key")
    if _ENCRYPTED in key_text:
        raise ValueError(f"{key_what} is encrypted: give the key without a passphrase")
    try:
        # No passphrase: never a prompt on the terminal, whatever the file holds.
        context.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key_what} is not the private key of {cert_what}") from None
        raise ValueError(f"cannot load {cert_what} with {key_what}: {_reason(exc)}") from None


def load_ca(context: Any, ca: str, what: str) -> None:
    """Trust the certificates in ``ca`` (one or more, PEM) in the ``ssl.SSLContext``."""
    import ssl

    if _CERTIFICATE not in read_pem(ca, what):
        raise ValueError(f"{what} holds no PEM certificate")
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ValueError(f"cannot load {what}: {_reason(exc)}") from None


def _reason(exc: Any) -> str:
    """OpenSSL's reason, readable: ``KEY_VALUES_MISMATCH`` -> ``key values mismatch``."""
    reason = getattr(exc, "reason", None)
    return reason.replace("_", " ").lower() if reason else str(exc)
