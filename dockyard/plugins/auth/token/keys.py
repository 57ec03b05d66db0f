"""The key that signs tokens, its certificate, and the keys whose tokens are trusted.

A token's header names its key by ``kid`` in libtrust's key-ID form, which is how the CNCF
registry finds the key among the certificates of its ``rootcertbundle``: the SHA-256 of the
DER SubjectPublicKeyInfo, cut to 240 bits, base32 without padding, in twelve groups of four
joined by ``:``. Each key verifies with exactly one algorithm, chosen by the key's type and
never by the token: ES256 for an EC P-256 key, RS256 for an RSA key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from dockyard.core.durable import create_file, replace_file
from dockyard.core.errors import ConfigError

#: The algorithms a signing key may use, by what a generated key is.
ALGORITHMS = ("ES256", "RS256")

#: Bits of a generated RSA key; a given one must have at least this many.
RSA_BITS = 2048

#: Years a generated certificate is valid. The CNCF registry looks a ``kid`` up among its root
#: certificates' keys without checking their dates; the dates matter only to x509 chains.
CERT_YEARS = 10

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def libtrust_key_id(public_key: PublicKey) -> str:
    """The key ID the CNCF registry computes for ``public_key`` (libtrust's fingerprint)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def algorithm_for(public_key: Any) -> str:
    """The one algorithm tokens signed by this key are verified with; ``ValueError`` for a
    key we do not accept."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return "ES256"
        raise ValueError(f"EC keys must be on P-256, not {public_key.curve.name}")
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < RSA_BITS:
            raise ValueError(f"RSA keys must have at least {RSA_BITS} bits")
        return "RS256"
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


@attrs.frozen
class VerifyingKey:
    """A public key trusted to sign tokens, with the algorithm it verifies."""

    key_id: str
    public_key: PublicKey
    algorithm: str


@attrs.frozen
class SigningKey:
    """The private key tokens are signed with, and its self-signed certificate."""

    private_key: PrivateKey
    algorithm: str
    key_id: str
    certificate_pem: str
    certificate_path: Path

    @property
    def verifying(self) -> VerifyingKey:
        return VerifyingKey(self.key_id, self.private_key.public_key(), self.algorithm)


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private(path: Path, setting: str) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"[auth.token] {setting}: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"[auth.token] {setting}: {path} is not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"[auth.token] {setting}: {path} must hold an EC P-256 or RSA key")
    return key


def _self_signed(key: PrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "dockyard")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _certificate_for(key: PrivateKey, path: Path, common_name: str) -> str:
    """The certificate at ``path`` if it is for ``key``; else a new self-signed one there."""
    with contextlib.suppress(OSError, ValueError):
        existing = x509.load_pem_x509_certificate(path.read_bytes())
        if existing.public_key() == key.public_key():
            return existing.public_bytes(serialization.Encoding.PEM).decode()
    pem = _self_signed(key, common_name).public_bytes(serialization.Encoding.PEM)
    try:
        replace_file(path, pem, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"[auth.token] certificate: cannot write {path}: {exc.strerror}"
        ) from None
    return pem.decode()


def load_signing_key(
    key_file: str, algorithm: str, certificate_file: str, state_dir: Path, issuer: str
) -> SigningKey:
    """The configured signing key, or the one generated in ``state_dir`` (mode 0600) the first
    time, with its self-signed certificate written to ``certificate_file``."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            f"[auth.token] algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}"
        )
    if key_file:
        key = _load_private(Path(key_file), "signing-key")
    else:
        path = state_dir / "signing-key.pem"
        if not path.exists():
            create_file(path, _private_pem(_generate(algorithm)), 0o600)
        key = _load_private(path, "signing-key (generated)")
    try:
        actual = algorithm_for(key.public_key())
    except ValueError as exc:
        raise ConfigError(f"[auth.token] signing-key: {exc}") from None
    if actual != algorithm:
        raise ConfigError(
            f"[auth.token] the signing key is for {actual} but algorithm is {algorithm}; "
            f"set algorithm = {actual!r} or give a matching key"
        )
    cert_path = Path(certificate_file) if certificate_file else state_dir / "token-cert.pem"
    pem = _certificate_for(key, cert_path, issuer)
    return SigningKey(key, actual, libtrust_key_id(key.public_key()), pem, cert_path)


def load_trusted_keys(files: Iterable[str]) -> list[VerifyingKey]:
    """The keys of PEM certificates or public keys in ``files`` (``trusted-certs``)."""
    keys = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"[auth.token] trusted-certs: cannot read {name}: {exc.strerror}"
            ) from None
        found: list[Any] = []
        if b"-----BEGIN CERTIFICATE-----" in data:
            found = [cert.public_key() for cert in x509.load_pem_x509_certificates(data)]
        else:
            with contextlib.suppress(ValueError):
                found = [serialization.load_pem_public_key(data)]
        if not found:
            raise ConfigError(
                f"[auth.token] trusted-certs: {name} holds no PEM certificate or public key"
            )
        for public_key in found:
            try:
                algorithm = algorithm_for(public_key)
            except ValueError as exc:
                raise ConfigError(f"[auth.token] trusted-certs: {name}: {exc}") from None
            keys.append(VerifyingKey(libtrust_key_id(public_key), public_key, algorithm))
    return keys
