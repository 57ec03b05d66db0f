"""Fixtures for registry tests: real registries on free loopback ports, moto for S3."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import uvicorn

from dockyard.core.config import Config, RegistryConfig
from dockyard.core.drivers import DriverKind
from dockyard.core.interfaces import AuthProvider
from dockyard.core.plugins import PluginHost
from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.app import create_registry_app
from dockyard.registry.ratelimit import RateLimiter
from dockyard.registry.store import Limits, RegistryStore
from tests.conftest import free_port


def wait_for_port(
    port: int,
    timeout: float = 20.0,
    process: subprocess.Popen | None = None,
    address: str = "127.0.0.1",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {address}:{port} after {timeout}s")


@attrs.define
class ThreadedRegistry:
    """A registry app served by uvicorn in a thread of the test process, over real HTTP."""

    store: RegistryStore
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(
    store: RegistryStore,
    auth: object = None,
    failures: RateLimiter | None = None,
    extra_routes: list | None = None,
    proxy: object = None,
    wrap: Callable[[Any], Any] | None = None,
) -> ThreadedRegistry:
    """``wrap``: applied to the app (an ASGI middleware that watches the requests, say)."""
    app = create_registry_app(store, auth, extra_routes, failures=failures, proxy=proxy)  # type: ignore[arg-type]
    if wrap is not None:
        app = wrap(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for_port(port)
    return ThreadedRegistry(store, port, server, thread)


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def store(registry_root: Path) -> RegistryStore:
    return RegistryStore(
        FilesystemBackend(registry_root), Limits(max_manifest_size=4 * 1024 * 1024 + 65536)
    )


@pytest.fixture
def registry(store: RegistryStore) -> Iterator[ThreadedRegistry]:
    server = serve_in_thread(store)
    yield server
    server.stop()


# ------------------------------------------------------------------------------ htpasswd files


def htpasswd(path: Path, user: str, password: str, *flags: str) -> None:
    """Add or change ``user`` in the htpasswd file ``path`` with Apache's own tool, as an
    operator would: ``htpasswd -B`` (bcrypt) unless ``flags`` say otherwise."""
    binary = shutil.which("htpasswd")
    if binary is None:
        pytest.fail("htpasswd is not installed (apt-get install apache2-utils)")
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        [binary, *create, *(flags or ("-B",)), "-i", str(path), user],
        input=password, text=True, capture_output=True, check=True,
    )  # fmt: skip


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    """A new htpasswd file of bcrypt entries made by ``htpasswd -B``."""
    for user, password in users.items():
        htpasswd(path, user, password)
    return path


def build_auth_provider(name: str, table: dict, state_dir: Path) -> AuthProvider:
    """Auth provider ``name`` with options ``table``, built by the plugin host as
    ``dockyard registry`` builds it."""
    config = attrs.evolve(
        Config(),
        registry=RegistryConfig(auth=name),
        driver_tables={(DriverKind.AUTH, name): table} if table else {},
    )
    return PluginHost(config, "registry").load().build(DriverKind.AUTH, state_dir)


# ------------------------------------------------------------------------------ S3 (moto)


@attrs.frozen
class MotoServer:
    endpoint: str

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        name = f"dockyard-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    pytest.importorskip("boto3")
    executable = shutil.which("moto_server")
    if executable is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


# ------------------------------------------------------------------------------ processes


@attrs.define
class ChildServer:
    """A server running as a child process on a loopback port, its output in ``log``."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RegistryProcess(ChildServer):
    """``dockyard registry`` running as a child process."""

    def server_errors(self) -> list[dict]:
        """Requests the registry answered with a 5xx, from its JSON log."""
        import json

        found = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "request" and entry.get("status", 0) >= 500:
                found.append(entry)
            if entry.get("level") == "error":
                found.append(entry)
        return found


def start_registry_process(
    workdir: Path,
    config_text: str,
    extra_env: dict[str, str] | None = None,
    plugin_sites: list[Path] | None = None,
) -> RegistryProcess:
    """Start ``python -m dockyard registry`` with ``config_text`` on a free port.

    Third-party plugins load only from ``plugin_sites`` (entry-point autoloading is off
    without them).
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"registry-{port}.toml"
    config.write_text(config_text)
    log = workdir / f"registry-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.update(extra_env or {})
    if plugin_sites:
        repository = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join([*(str(s) for s in plugin_sites), str(repository)])
    else:
        env["DOCKYARD_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dockyard",
                "registry",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for_port(port, process=process)
    except Exception:
        process.kill()
        raise RuntimeError(f"registry did not start: {log.read_text()[-3000:]}") from None
    return RegistryProcess(process, port, log)


@pytest.fixture
def serve_registry() -> Iterator[object]:
    """Factory: serve a store in a thread (stopped at teardown)."""
    servers: list[ThreadedRegistry] = []

    def serve(
        store: RegistryStore,
        auth: object = None,
        failures: RateLimiter | None = None,
        extra_routes: list | None = None,
    ) -> ThreadedRegistry:
        server = serve_in_thread(store, auth, failures, extra_routes)
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def registry_process(tmp_path: Path) -> Iterator[object]:
    """Factory: start ``dockyard registry`` processes (stopped at teardown)."""
    processes: list[RegistryProcess] = []

    def start(
        config_text: str,
        extra_env: dict[str, str] | None = None,
        plugin_sites: list[Path] | None = None,
    ) -> RegistryProcess:
        process = start_registry_process(
            tmp_path / "processes", config_text, extra_env, plugin_sites
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


# ------------------------------------------------------------------------------ the CNCF registry


def start_cncf_registry(workdir: Path, auth: str = "", address: str = "127.0.0.1") -> ChildServer:
    """Start the CNCF registry (distribution 2.8, Debian's ``docker-registry``) on a free port
    of ``address`` with its data under ``workdir``; ``auth`` is YAML added to its config: an
    ``auth:`` section, after lines that continue ``http:`` (a ``tls:`` section) if wanted."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    workdir.mkdir(parents=True)
    config = workdir / "config.yml"
    listen = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir}/data\n"
        "  delete:\n    enabled: true\n"
        f'http:\n  addr: "{listen}"\n{auth}'
    )
    log = workdir / "registry.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
    registry = ChildServer(process, port, log)
    try:
        wait_for_port(port, process=process, address=address)
    except BaseException:
        registry.stop()
        raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}") from None
    return registry


@pytest.fixture
def cncf_registry(tmp_path: Path) -> Iterator[ChildServer]:
    """The CNCF registry on a free port, its data under ``tmp_path``: the reference the
    interop tests compare against."""
    registry = start_cncf_registry(tmp_path / "cncf")
    yield registry
    registry.stop()


@pytest.fixture
def cncf_registry_with_auth(tmp_path: Path) -> Iterator[object]:
    """Factory: the CNCF registry with an ``auth:`` config section (stopped at teardown)."""
    started: list[ChildServer] = []

    def start(auth: str) -> ChildServer:
        registry = start_cncf_registry(tmp_path / f"cncf-{len(started)}", auth)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


# ------------------------------------------------------------------------------ a small client


@attrs.frozen
class PushedImage:
    """An image pushed by :class:`OciClient.push_image`."""

    manifest: bytes
    digest: str
    config: bytes
    layers: tuple[bytes, ...]


class OciClient:
    """Just enough of a distribution client for tests, over ``requests``."""

    MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    INDEX = "application/vnd.oci.image.index.v1+json"

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()

    def request(self, method: str, path: str, **kwargs: object) -> object:
        target = path if path.startswith("http") else self.url + path
        return self.http.request(method, target, allow_redirects=False, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def digest(data: bytes, algorithm: str = "sha256") -> str:
        import hashlib

        return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"

    def push_blob(self, name: str, data: bytes) -> str:
        digest = self.digest(data)
        reply = self.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
        assert reply.status_code == 201, (reply.status_code, reply.text)  # type: ignore[attr-defined]
        return digest

    def manifest_for(
        self,
        config: bytes,
        layers: list[bytes],
        subject: dict | None = None,
        artifact_type: str | None = None,
        annotations: dict[str, str] | None = None,
        config_type: str = "application/vnd.oci.image.config.v1+json",
    ) -> bytes:
        import json

        document: dict = {
            "schemaVersion": 2,
            "mediaType": self.MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": self.digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.digest(layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        if subject is not None:
            document["subject"] = subject
        if artifact_type:
            document["artifactType"] = artifact_type
        if annotations:
            document["annotations"] = annotations
        return json.dumps(document).encode()

    def put_manifest(
        self, name: str, reference: str, body: bytes, media_type: str = MANIFEST
    ) -> object:
        return self.request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        )

    def push_image(
        self, name: str, tag: str, layers: list[bytes] | None = None, config: bytes | None = None
    ) -> PushedImage:
        config = config if config is not None else b'{"architecture":"amd64","os":"linux"}'
        layers = layers if layers is not None else [os.urandom(64)]
        for blob in [config, *layers]:
            self.push_blob(name, blob)
        manifest = self.manifest_for(config, layers)
        reply = self.put_manifest(name, tag, manifest)
        assert reply.status_code == 201, (reply.status_code, reply.text)  # type: ignore[attr-defined]
        return PushedImage(manifest, self.digest(manifest), config, tuple(layers))


class TokenClient(OciClient):
    """An OciClient that answers Bearer challenges as docker does: on a 401 it asks the realm
    for a token for the challenge's service and scope (with Basic ``credentials``, or
    anonymously), then retries once with it."""

    def __init__(self, url: str, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(url)
        self.credentials = credentials
        self.tokens: list[str] = []

    @staticmethod
    def challenge(header: str) -> dict[str, str]:
        from dockyard.core.httpauth import parse_challenges

        (found,) = parse_challenges(header)
        assert found.scheme == "Bearer", header
        return found.params

    def token_for(self, realm: str, service: str, scope: str) -> str:
        params = {"service": service}
        if scope:
            params["scope"] = scope
        reply = self.http.get(realm, params=params, auth=self.credentials, timeout=30)
        assert reply.status_code == 200, (reply.status_code, reply.text)
        token = reply.json()["token"]
        self.tokens.append(token)
        return token

    def request(self, method: str, path: str, **kwargs: object) -> object:
        data = kwargs.get("data")
        reply = super().request(method, path, **kwargs)
        if reply.status_code != 401 or "Bearer" not in reply.headers.get(  # type: ignore[attr-defined]
            "WWW-Authenticate", ""
        ):
            return reply
        params = self.challenge(reply.headers["WWW-Authenticate"])  # type: ignore[attr-defined]
        token = self.token_for(params["realm"], params["service"], params.get("scope", ""))
        headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
        headers["Authorization"] = f"Bearer {token}"
        kwargs["data"] = data
        return super().request(method, path, headers=headers, **kwargs)


@pytest.fixture
def client(registry: ThreadedRegistry) -> OciClient:
    return OciClient(registry.url)


@pytest.fixture
def client_for() -> object:
    return OciClient
