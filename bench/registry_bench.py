"""``dockyard registry`` beside the CNCF registry (Debian's docker-registry), in one run.

Run: ``python bench/registry_bench.py [--blob-mb 256] [--seconds 5]``. Both registries serve
from the filesystem on a temporary directory and listen on loopback. Measured for each:

* **blob push**: one blob, ``POST`` then a streamed ``PUT`` (MB/s, best of three);
* **blob pull**: ``GET`` of that blob, streamed (MB/s, best of three);
* **chunked push**: another blob of the same size in 32 MiB ``PATCH`` chunks (MB/s, best of
  three);
* **manifest GETs**: 16 keep-alive connections fetching one manifest by tag as fast as they can
  for ``--seconds`` (requests/s and p99 latency), from a small asyncio client so the client is
  not the bottleneck;
* **skopeo copy**: a 5-layer image (~80 MB) from a docker-archive into the registry and back
  out to a directory (seconds).

Prints a table and the ratios dockyard/CNCF. Targets: blob throughput at least the CNCF
registry's; manifest requests/s at least half of it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dockyard.testing.images import busybox_rootfs, image_archive  # noqa: E402

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def start_dockyard(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = workdir / "dockyard.toml"
    config.write_text(
        f'[registry]\ndata-root = "{workdir}/dockyard-state"\nlog-level = "warning"\n'
        f'[registries.filesystem]\nroot = "{workdir}/dockyard-data"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config),
         "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "dockyard.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    wait_for(port, process)
    return process, port


def start_cncf(workdir: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("docker-registry") or sys.exit("docker-registry is not installed")
    port = free_port()
    config = workdir / "cncf.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir}/cncf-data\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "cncf.log", "wb"),  # noqa: SIM115
    )
    wait_for(port, process)
    return process, port


def _send(
    port: int, method: str, target: str, body: memoryview, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """One request with a large body sent in 1 MiB writes (a lean client: both registries
    share the two cores with it, so its own cost must stay small)."""
    path = target.split(f"127.0.0.1:{port}", 1)[-1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for key, value in {**headers, "Content-Length": str(len(body))}.items():
        connection.putheader(key, value)
    connection.endheaders()
    for start in range(0, len(body), MIB):
        connection.send(body[start : start + MIB])
    reply = connection.getresponse()
    reply.read()
    connection.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}


def _absolute(url: str, location: str) -> str:
    return location if location.startswith("http") else url + location


def push_blob(url: str, port: int, name: str, data: memoryview, digest: str) -> float:
    started = time.perf_counter()
    location = requests.post(f"{url}/v2/{name}/blobs/uploads/", timeout=60).headers["Location"]
    target = _absolute(url, location)
    separator = "&" if "?" in target else "?"
    status, _ = _send(port, "PUT", f"{target}{separator}digest={digest}", data,
                      {"Content-Type": "application/octet-stream"})  # fmt: skip
    assert status == 201, status
    return time.perf_counter() - started


def pull_blob(port: int, name: str, digest: str, size: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", f"/v2/{name}/blobs/{digest}")
    reply = connection.getresponse()
    assert reply.status == 200
    buffer = bytearray(MIB)
    received = 0
    while count := reply.readinto(buffer):
        received += count
    connection.close()
    assert received == size
    return time.perf_counter() - started


def push_chunked(
    url: str, port: int, name: str, data: memoryview, digest: str, chunk: int
) -> float:
    started = time.perf_counter()
    location = requests.post(f"{url}/v2/{name}/blobs/uploads/", timeout=60).headers["Location"]
    for start in range(0, len(data), chunk):
        end = min(start + chunk, len(data)) - 1
        status, headers = _send(port, "PATCH", _absolute(url, location), data[start : end + 1],
                                {"Content-Range": f"{start}-{end}",
                                 "Content-Type": "application/octet-stream"})  # fmt: skip
        assert status == 202, status
        location = headers["location"]
    target = _absolute(url, location)
    separator = "&" if "?" in target else "?"
    reply = requests.put(f"{target}{separator}digest={digest}", timeout=600)
    assert reply.status_code == 201, reply.text
    return time.perf_counter() - started


def push_small_image(url: str, name: str) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = os.urandom(1024)
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        reply = requests.post(f"{url}/v2/{name}/blobs/uploads/", timeout=10)
        location = reply.headers["Location"]
        target = location if location.startswith("http") else url + location
        separator = "&" if "?" in target else "?"
        assert requests.put(f"{target}{separator}digest={digest}", data=blob,
                            timeout=10).status_code == 201  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    }).encode()  # fmt: skip
    reply = requests.put(
        f"{url}/v2/{name}/manifests/latest",
        data=manifest,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert reply.status_code == 201, reply.text


async def _manifest_worker(
    port: int, path: str, until: float, latencies: list[float], extra_headers: str = ""
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra_headers}"
        "Accept: application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    ).encode()
    while time.perf_counter() < until:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
    writer.close()


def manifest_gets(
    port: int, name: str, seconds: float, connections: int = 16, extra_headers: str = ""
) -> tuple[float, float]:
    """Requests/s and p99 latency (ms); ``extra_headers`` are whole lines ("K: V\\r\\n")."""
    latencies: list[float] = []
    path = f"/v2/{name}/manifests/latest"

    async def run() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _manifest_worker(port, path, until, latencies, extra_headers)
                for _ in range(connections)
            )
        )

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return len(latencies) / elapsed, p99


def skopeo_copy(host: str, archive: Path, workdir: Path, label: str) -> tuple[float, float]:
    target = f"docker://{host}/bench/skopeo:v1"
    started = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    target], check=True, capture_output=True)  # fmt: skip
    push = time.perf_counter() - started
    out = workdir / f"skopeo-out-{label}"
    started = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", target, f"dir:{out}"],
                   check=True, capture_output=True)  # fmt: skip
    pull = time.perf_counter() - started
    shutil.rmtree(out)
    return push, pull


def measure(label: str, url: str, port: int, blob: memoryview, blob_digest: str,
            chunked: memoryview, chunked_digest: str, archive: Path, workdir: Path,
            seconds: float) -> dict[str, float]:  # fmt: skip
    size_mb = len(blob) / MIB
    results: dict[str, float] = {}
    # Best of three: the machine is shared, and noise only ever slows a run down.
    pushes = [push_blob(url, port, "bench/blob", blob, blob_digest) for _ in range(3)]
    results["blob push MB/s"] = size_mb / min(pushes)
    pulls = [pull_blob(port, "bench/blob", blob_digest, len(blob)) for _ in range(3)]
    results["blob pull MB/s"] = size_mb / min(pulls)
    chunked_pushes = [
        push_chunked(url, port, f"bench/chunked{i}", chunked, chunked_digest, 32 * MIB)
        for i in range(3)
    ]
    results["chunked push MB/s"] = size_mb / min(chunked_pushes)
    push_small_image(url, "bench/small")
    manifest_gets(port, "bench/small", 0.5)  # warm up
    rate, p99 = manifest_gets(port, "bench/small", seconds)
    results["manifest GET req/s"] = rate
    results["manifest GET p99 ms"] = p99
    push, pull = skopeo_copy(f"127.0.0.1:{port}", archive, workdir, label)
    results["skopeo copy push s"] = push
    results["skopeo copy pull s"] = pull
    return results


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory: a streamed blob must not show up in it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blob-mb", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    blob = memoryview(os.urandom(args.blob_mb * MIB))
    chunked = memoryview(os.urandom(args.blob_mb * MIB))
    blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    chunked_digest = "sha256:" + hashlib.sha256(chunked).hexdigest()
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as temp:
        workdir = Path(temp)
        layers = [busybox_rootfs(compress=True)] + [os.urandom(16 * MIB) for _ in range(4)]
        archive = workdir / "image.tar"
        archive.write_bytes(image_archive(layers, ["bench:v1"], layout="docker"))
        table: dict[str, dict[str, float]] = {}
        for label, start in (("dockyard", start_dockyard), ("cncf", start_cncf)):
            process, port = start(workdir)
            try:
                table[label] = measure(label, f"http://127.0.0.1:{port}", port, blob,
                                       blob_digest, chunked, chunked_digest, archive, workdir,
                                       args.seconds)  # fmt: skip
                table[label]["server peak RSS MB"] = peak_rss_mb(process.pid)
            finally:
                process.terminate()
                process.wait(30)
    print(f"{'metric':<22}{'dockyard':>12}{'cncf':>12}{'ratio':>9}")
    for metric in table["dockyard"]:
        ours, theirs = table["dockyard"][metric], table["cncf"][metric]
        print(f"{metric:<22}{ours:>12.1f}{theirs:>12.1f}{ours / theirs:>9.2f}")
    ours, theirs = table["dockyard"], table["cncf"]
    blob_ok = all(ours[m] >= theirs[m] for m in ("blob push MB/s", "blob pull MB/s",
                                                  "chunked push MB/s"))  # fmt: skip
    manifest_ok = ours["manifest GET req/s"] >= theirs["manifest GET req/s"] / 2
    print(f"target blob throughput >= cncf: {'met' if blob_ok else 'MISSED'}")
    print(f"target manifest req/s >= cncf/2: {'met' if manifest_ok else 'MISSED'}")


if __name__ == "__main__":
    main()
