"""The backend conformance suite, run over every registry backend installed here.

Backends are found the way the registry finds them (a :class:`PluginHost`), so a third-party
backend installed in this environment is tested too, with its default config.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from dockyard.core.config import Config, RegistryConfig
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError
from dockyard.core.plugins import PluginHost
from dockyard.testing.registry_backends import RegistryBackendSuite

KIND = DriverKind.REGISTRY_BACKEND


EXAMPLE_DIST = Path(__file__).resolve().parents[1] / "plugins" / "dockyard-memory-backend"


def installed_backends() -> list[str]:
    host = PluginHost(Config(), "cli").load()
    return sorted(info.name for info in host.driver_infos(KIND))


def backends_to_test() -> list[str]:
    """Every installed backend, plus the example third-party one when it is not installed:
    the test then pip-installs it into a private site and loads it through its entry point."""
    names = installed_backends()
    if "memory" not in names and (EXAMPLE_DIST / "setup.cfg").exists():
        names.append("memory")
    return names


def build_backend(name: str, table: dict, state_dir: Path) -> object:
    """Build backend ``name`` through the plugin host, as ``dockyard registry`` does."""
    config = attrs.evolve(
        Config(),
        registry=RegistryConfig(backend=name),
        driver_tables={(KIND, name): table} if table else {},
    )
    try:
        host = PluginHost(config, "registry").load()
    except ConfigError as exc:
        pytest.skip(str(exc))
    return host.build(KIND, state_dir)


def test_builtin_backends_are_installed():
    assert {"filesystem", "s3"} <= set(installed_backends())


@pytest.fixture(params=backends_to_test())
def backend_name(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory" and "memory" not in installed_backends():
        site = request.getfixturevalue("plugin_sites")[EXAMPLE_DIST.name]
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        try:
            yield request.param
        finally:
            sys.path.remove(str(site))
            importlib.invalidate_caches()
        return
    yield request.param


class TestInstalledBackends(RegistryBackendSuite):
    @pytest.fixture
    def backend(self, backend_name: str, tmp_path: Path, request: pytest.FixtureRequest):
        table: dict = {}
        if backend_name == "filesystem":
            table = {"root": str(tmp_path / "fs-root")}
        elif backend_name == "s3":
            moto = request.getfixturevalue("moto_server")
            self.s3_bucket = moto.new_bucket()
            self.s3_client = moto.client()
            table = {
                "bucket": self.s3_bucket,
                "prefix": "conformance",
                "endpoint-url": moto.endpoint,
                "region": "us-east-1",
                "access-key-id": "testing",
                "secret-access-key": "testing",
                "part-size": 5 * 1024 * 1024,
            }
        return build_backend(backend_name, table, tmp_path / "state")

    @pytest.fixture
    def backend_leftovers(self, backend, backend_name: str, tmp_path: Path):
        def listing() -> list[str]:
            found = [str(p) for p in backend.list("/")] if backend_name != "filesystem" else []
            if backend_name == "filesystem":
                root = tmp_path / "fs-root"
                for directory, dirs, files in os.walk(root):
                    found += [os.path.join(directory, n) for n in dirs + files]
            elif backend_name == "s3":
                objects = self.s3_client.list_objects_v2(Bucket=self.s3_bucket)
                found += [o["Key"] for o in objects.get("Contents", [])]
                uploads = self.s3_client.list_multipart_uploads(Bucket=self.s3_bucket)
                found += [f"multipart {u['Key']}" for u in uploads.get("Uploads", [])]
            return found

        return listing


def test_s3_reports_skip_without_boto3():
    # A process in which boto3 cannot be imported, as on an install without the s3 extra.
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from dockyard.core.config import Config\n"
        "from dockyard.core.plugins import PluginHost\n"
        "host = PluginHost(Config(), 'cli').load()\n"
        "[s3] = [d for p in host.report() for d in p.drivers if d.name == 's3']\n"
        "print(s3.status, '|', s3.reason)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    status, reason = result.stdout.strip().split(" | ")
    assert status == "skip"
    assert "boto3 is not installed" in reason
