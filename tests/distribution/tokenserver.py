"""A small but real token server for tests: docker's token authentication, signed JWTs.

It serves ``GET /token`` (HTTP Basic credentials or anonymous, ``service``, ``scope``,
``offline_token``, ``client_id``, ``account``) and the OAuth2 ``POST /token`` (the ``password``
and ``refresh_token`` grants), as distribution's token-auth documents describe, and signs ES256
JWTs (pyjwt) whose ``kid`` is the libtrust key ID the CNCF registry looks its trusted keys up by. The
CNCF registry, configured with ``auth: token:`` and this server's certificate as its
``rootcertbundle``, accepts them: that is the registry's side of the exchange our daemon must
get right.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key ID the CNCF registry gives a trusted key: the first 240 bits of the SHA-256 of
    its DER SubjectPublicKeyInfo, in base32, in groups of four joined by colons."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@attrs.define
class TokenRequest:
    """One request the server answered, for tests to look at."""

    method: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    basic_user: str | None
    status: int


@attrs.define
class TokenServer:
    """The server: users and their passwords, the issuer, the service it issues tokens for."""

    users: dict[str, str]
    service: str
    issuer: str = "dockyard-test-issuer"
    lifetime: int = 300
    key: ec.EllipticCurvePrivateKey = attrs.field(
        factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    requests: list[TokenRequest] = attrs.Factory(list)
    #: refresh token -> the user it was issued to
    refresh_tokens: dict[str, str] = attrs.Factory(dict)
    #: Answer GET with 405, as a server that only speaks the OAuth2 form does.
    refuse_get: bool = False
    httpd: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def write_certificate(self, path: Path) -> Path:
        """The self-signed certificate of the signing key: the registry's ``rootcertbundle``."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, subject: str, scopes: list[str]) -> str:
        """A signed JWT granting ``subject`` every action of ``scopes`` (this server trusts its
        users with everything: the tests here are about the exchange, not the policy)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        headers = {"kid": libtrust_key_id(self.key.public_key())}
        return jwt.encode(claims, self.key, algorithm="ES256", headers=headers)

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                user = self._basic_user()
                if server.refuse_get:
                    self._answer(405, {"error": "method not allowed"}, query, {}, None)
                elif parts.path != "/token":
                    self._answer(404, {"errors": [{"code": "NOT_FOUND"}]}, query, {}, user)
                elif user is False:
                    self._unauthorized(query, {})
                else:
                    subject = user or ""
                    body: dict[str, object] = {
                        "token": server.issue(subject, query.get("scope", [])),
                        "expires_in": server.lifetime,
                        "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
                    }
                    if user and query.get("offline_token") == ["true"]:
                        body["refresh_token"] = server.new_refresh_token(user)
                    self._answer(200, body, query, {}, user or None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                user: str | None = None
                if grant == "password":
                    name = form.get("username", [""])[0]
                    password = form.get("password", [""])[0]
                    if server.users.get(name) != password or not password:
                        self._unauthorized({}, form)
                        return
                    user = name
                elif grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                    if user is None:
                        self._unauthorized({}, form)
                        return
                else:
                    self._answer(400, {"error": "unsupported_grant_type"}, {}, form, None)
                    return
                scopes = form.get("scope", [""])[0].split()
                body = {
                    "access_token": server.issue(user, scopes),
                    "expires_in": server.lifetime,
                    "scope": " ".join(scopes),
                }
                if grant == "password" and form.get("access_type") == ["offline"]:
                    body["refresh_token"] = server.new_refresh_token(user)
                self._answer(200, body, {}, form, user)

            def _basic_user(self) -> str | bool | None:
                """The user of valid Basic credentials; None without any; False when wrong."""
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return name if server.users.get(name) == password else False

            def _unauthorized(self, query: dict, form: dict) -> None:
                body = {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
                self._answer(401, body, query, form, None)

            def _answer(self, status: int, body: dict, query: dict, form: dict, user) -> None:
                server.requests.append(TokenRequest(self.command, query, form, user, status))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def new_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = user
        return token

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)
