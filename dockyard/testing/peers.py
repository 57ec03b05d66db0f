"""Real third-party peers for tests and benchmarks: a private dockerd, the docker CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from dockyard.linux.mounts import unmount_all


def beside_python(name: str) -> str | None:
    """Program ``name`` as installed beside this interpreter (a virtualenv's console scripts,
    whether or not the virtualenv is activated: ``.venv/bin/python bench/X.py`` finds
    ``.venv/bin/dockyard``), else the first on PATH, else ``None``.

    Beside the interpreter comes first: a ``dockyard`` on PATH may be another checkout's, or a
    version manager's shim (pyenv's is a shell script costing ~50 ms a start)."""
    beside = Path(sys.executable).with_name(name)
    if os.access(beside, os.X_OK) and beside.is_file():
        return str(beside)
    return shutil.which(name)


def docker_cli() -> str:
    """The real docker CLI: the one on PATH, else Debian's docker.io."""
    found = shutil.which("docker") or (
        "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else None
    )
    if found is None:
        raise RuntimeError("the docker CLI is not installed (apt-get install docker.io)")
    return found


def docker_env(host: str, config_dir: Path | None = None) -> dict[str, str]:
    """This environment without DOCKER_* settings, pointed at ``host``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = host
    if config_dir is not None:
        env["DOCKER_CONFIG"] = str(config_dir)
    return env


@attrs.frozen
class RealDockerd:
    host: str
    root: Path

    def docker(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return subprocess.run(
            [docker_cli(), *args],
            env=docker_env(self.host, self.root / "client-config"),
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
            **kwargs,
        )


@contextlib.contextmanager
def real_dockerd(
    root: Path,
    timeout: float = 30,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[RealDockerd]:
    """dockerd on its own data root, exec root and socket; loopback registries are insecure.

    ``extra_args`` are more flags (``-H tcp://...``, TLS); ``env`` its environment, if not ours.
    """
    binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(binary):
        raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
    root.mkdir(parents=True, exist_ok=True)
    socket_path = root / "docker.sock"
    log_path = root / "dockerd.log"
    # Short, whatever ``root`` is: containerd's socket lives under it, and a Unix socket path
    # has at most 107 bytes (a deep pytest directory made dockerd time out starting it).
    exec_root = Path(tempfile.mkdtemp(prefix="dyx-"))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                binary,
                "--data-root", str(root / "data"),
                "--exec-root", str(exec_root),
                "--pidfile", str(root / "dockerd.pid"),
                "-H", f"unix://{socket_path}",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--insecure-registry", "127.0.0.0/8",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        peer = RealDockerd(f"unix://{socket_path}", root)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {log_path.read_text()[-2000:]}")
            if socket_path.exists() and peer.docker("version", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield peer
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # dockerd makes its data root a mount point first thing, and one that fails to start
        # (a TLS file missing, say) leaves it mounted.
        unmount_all(str(root / "data"))
        # Its network namespace file stays mounted after it exits.
        unmount_all(str(exec_root / "netns" / "default"))
        unmount_all(str(exec_root))
        shutil.rmtree(exec_root, ignore_errors=True)
