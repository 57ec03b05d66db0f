"""``dockyard registry`` as real processes: crash safety, shared S3 storage, redirects."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests


def fs_config(root: Path) -> str:
    return (
        f'[registry]\nbackend = "filesystem"\ndata-root = "{root}/state"\n'
        f'[registries.filesystem]\nroot = "{root}/data"\n'
    )


IN_CONFIG = 'access-key-id = "testing"\nsecret-access-key = "testing"'


def s3_config(
    moto, bucket: str, data_root: Path, redirect: bool = False, credentials: str = IN_CONFIG
) -> str:
    """Config for the s3 backend; ``credentials`` are the lines that say where keys come from."""
    return (
        f'[registry]\nbackend = "s3"\ndata-root = "{data_root}"\n'
        f'[registries.s3]\nbucket = "{bucket}"\nprefix = "reg"\n'
        f'endpoint-url = "{moto.endpoint}"\nregion = "us-east-1"\n'
        f"{credentials}\n"
        f"part-size = {5 * 1024 * 1024}\nredirect = {'true' if redirect else 'false'}\n"
    )


def check_blob_store_integrity(data_root: Path) -> int:
    """Every visible blob's bytes hash to its name; return how many blobs there are."""
    count = 0
    blobs = data_root / "v2" / "blobs"
    for data in blobs.glob("*/*/*/data"):
        algorithm, hex_digest = data.parent.parent.parent.name, data.parent.name
        assert hashlib.new(algorithm, data.read_bytes()).hexdigest() == hex_digest, data
        count += 1
    return count


def test_sigkill_mid_upload_restarts_consistent(tmp_path, registry_process, client_for):
    config = fs_config(tmp_path)
    first = registry_process(config)
    client = client_for(first.url)
    image = client.push_image("crash/test", "v1", layers=[os.urandom(300_000), b"second layer"])
    data = os.urandom(6 * 1024 * 1024)
    location = client.request("POST", "/v2/crash/test/blobs/uploads/").headers["Location"]
    reply = client.request(
        "PATCH",
        location,
        data=data[: 1024 * 1024],
        headers={"Content-Range": f"0-{1024 * 1024 - 1}"},
    )
    assert reply.status_code == 202
    monolithic = os.urandom(4 * 1024 * 1024)
    started = threading.Event()

    def slow(payload: bytes):
        for start in range(0, len(payload), 256 * 1024):
            started.set()
            time.sleep(0.05)
            yield payload[start : start + 256 * 1024]

    def send(method: str, url: str, payload: bytes, headers: dict) -> None:
        # The server dies under us: that is the point.
        with contextlib.suppress(requests.RequestException):
            requests.request(method, url, data=slow(payload), headers=headers, timeout=30)

    senders = [
        threading.Thread(
            target=send, args=("PATCH", first.url + location, data[1024 * 1024 :], {})
        ),
        threading.Thread(
            target=send,
            args=(
                "POST",
                f"{first.url}/v2/crash/test/blobs/uploads/?digest={client.digest(monolithic)}",
                monolithic,
                {},
            ),
        ),
    ]
    for sender in senders:
        sender.start()
    started.wait(10)
    time.sleep(0.5)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    for sender in senders:
        sender.join(30)

    second = registry_process(config)
    client = client_for(second.url)
    assert check_blob_store_integrity(tmp_path / "data") >= 4
    assert client.request("GET", "/v2/crash/test/manifests/v1").content == image.manifest
    for layer in image.layers:
        assert (
            client.request("GET", f"/v2/crash/test/blobs/{client.digest(layer)}").content == layer
        )
    # The half-sent monolithic blob is not there; the chunked session resumes where it stopped.
    assert (
        client.request("HEAD", f"/v2/crash/test/blobs/{client.digest(monolithic)}").status_code
        == 404
    )
    status = client.request("GET", location)
    assert status.status_code == 204
    have = int(status.headers["Range"].split("-")[1]) + 1
    assert 1024 * 1024 <= have < len(data)
    rest = client.request(
        "PUT",
        f"{location}?digest={client.digest(data)}",
        data=data[have:],
        headers={"Content-Range": f"{have}-{len(data) - 1}"},
    )
    assert rest.status_code == 201, rest.text
    assert client.request("GET", f"/v2/crash/test/blobs/{client.digest(data)}").content == data
    assert client.push_blob("crash/test", monolithic) == client.digest(monolithic)


def test_two_registries_share_one_s3_bucket(tmp_path, moto_server, registry_process, client_for):
    bucket = moto_server.new_bucket()
    # One gets its secret from a file, the other its credentials from the AWS environment.
    secret = tmp_path / "secret"
    secret.write_text("testing\n")
    from_file = f'access-key-id = "testing"\nsecret-access-key-file = "{secret}"'
    one = registry_process(s3_config(moto_server, bucket, tmp_path / "one", credentials=from_file))
    two = registry_process(
        s3_config(moto_server, bucket, tmp_path / "two", credentials="# from the environment"),
        extra_env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    push, pull = client_for(one.url), client_for(two.url)
    big = os.urandom(12 * 1024 * 1024)  # several multipart parts
    image = push.push_image("shared/app", "v1", layers=[big, b"small layer"])
    got = pull.request("GET", "/v2/shared/app/manifests/v1")
    assert got.status_code == 200 and got.content == image.manifest
    assert pull.request("GET", f"/v2/shared/app/blobs/{pull.digest(big)}").content == big
    assert pull.request("GET", "/v2/shared/app/tags/list").json()["tags"] == ["v1"]
    assert pull.request("GET", "/v2/_catalog").json()["repositories"] == ["shared/app"]
    # One chunked upload, its chunks spread over both processes.
    data = os.urandom(11 * 1024 * 1024)
    location = push.request("POST", "/v2/shared/app/blobs/uploads/").headers["Location"]
    cut1, cut2 = 6 * 1024 * 1024, 9 * 1024 * 1024
    assert (
        push.request(
            "PATCH", location, data=data[:cut1], headers={"Content-Range": f"0-{cut1 - 1}"}
        ).status_code
        == 202
    )
    assert pull.request("GET", location).headers["Range"] == f"0-{cut1 - 1}"
    assert (
        pull.request(
            "PATCH", location, data=data[cut1:cut2], headers={"Content-Range": f"{cut1}-{cut2 - 1}"}
        ).status_code
        == 202
    )
    done = push.request(
        "PUT",
        f"{location}?digest={push.digest(data)}",
        data=data[cut2:],
        headers={"Content-Range": f"{cut2}-{len(data) - 1}"},
    )
    assert done.status_code == 201, done.text
    assert pull.request("GET", f"/v2/shared/app/blobs/{pull.digest(data)}").content == data
    assert pull.request("DELETE", "/v2/shared/app/manifests/v1").status_code == 202
    assert push.request("GET", "/v2/shared/app/manifests/v1").status_code == 404
    assert one.server_errors() == [] and two.server_errors() == []


def test_s3_redirects_blob_reads_to_presigned_urls(
    tmp_path, moto_server, registry_process, client_for
):
    bucket = moto_server.new_bucket()
    server = registry_process(s3_config(moto_server, bucket, tmp_path / "r", redirect=True))
    client = client_for(server.url)
    data = os.urandom(1000)
    digest = client.push_blob("redirected", data)
    reply = client.request("GET", f"/v2/redirected/blobs/{digest}")
    assert reply.status_code == 307
    assert reply.headers["Location"].startswith(moto_server.endpoint)
    assert requests.get(reply.headers["Location"], timeout=10).content == data
    assert requests.get(f"{server.url}/v2/redirected/blobs/{digest}", timeout=10).content == data
    assert client.request("HEAD", f"/v2/redirected/blobs/{digest}").status_code == 200


@pytest.mark.parametrize(
    ("flags", "config", "message"),
    [
        (["--listen", "nowhere:port"], "", "listen"),
        ([], '[registry]\nbackend = "nonexistent"\n', "unknown registry backend 'nonexistent'"),
        ([], '[registry]\nmax-blob-size = "big"\n', "max-blob-size"),
        ([], '[registries.s3]\nbucket = ""\n[registry]\nbackend = "s3"\n', "bucket is required"),
        ([], '[registry]\nproxy = { remote-url = "ftp://h" }\n', "[registry] proxy.remote-url"),
        ([], '[registry]\nproxy = { remote-url = "http://h", ttl = 1 }\n', "'registry.proxy.ttl'"),
    ],
)
def test_bad_setup_is_one_clear_line(tmp_path, flags, config, message):
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        config + f'\n[registry]\ndata-root = "{tmp_path}"\n'
        if "[registry]" not in config
        else config
    )
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config_file), *flags],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_take_part_in_the_registry(tmp_path, plugin_sites, registry_process, client_for):
    """Hooks run with program "registry"; a plugin's auth provider guards the API and its
    routes are served beside it."""
    record = tmp_path / "record.jsonl"
    config = fs_config(tmp_path) + (
        '[auth.static]\nusers = { builder = "s3cret" }\nrealm = "lab"\n'
    )
    config = config.replace("[registry]\n", '[registry]\nauth = "static"\n')
    server = registry_process(
        config,
        extra_env={"DOCKYARD_TEST_RECORD": str(record)},
        plugin_sites=[plugin_sites["dockyard-test-plugins"]],
    )
    client = client_for(server.url)
    hello = client.request("GET", "/recorder/hello")
    assert hello.status_code == 200 and hello.json()["hello"] == "registry"
    denied = client.request("POST", "/v2/team/app/blobs/uploads/")
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"] == 'Basic realm="lab"'
    client.http.auth = ("builder", "s3cret")
    image = client.push_image("team/app", "v1")
    client.http.auth = None
    pulled = client.request("GET", "/v2/team/app/manifests/v1")
    assert pulled.status_code == 200 and pulled.content == image.manifest
    assert client.request("DELETE", "/v2/team/app/manifests/v1").status_code == 401
    server.stop()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    for hook in ("dockyard_configure", "dockyard_routes", "dockyard_startup", "dockyard_shutdown"):
        assert any(c["hook"] == hook and c.get("program") == "registry" for c in calls), hook
    # Every plugin's shutdown ran through pluggy: one without arguments, and the others
    # after one that failed (logged).
    assert {"hook": "dockyard_shutdown", "plugin": "bare"} in calls
    assert "the unruly plugin will not shut down (registry)" in server.log.read_text()


def test_tls(tmp_path, registry_process):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    config = fs_config(tmp_path).replace(
        "[registry]\n", f'[registry]\ntlscert = "{cert}"\ntlskey = "{key}"\n'
    )
    server = registry_process(config)
    reply = requests.get(f"https://{server.host}/v2/", verify=str(cert), timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Docker-Distribution-API-Version"] == "registry/2.0"
