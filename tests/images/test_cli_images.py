"""The image commands of our own client against a real daemon: output, errors, streaming."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import pty
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockyard.cli import human_duration, human_size_decimal, write_atomically
from dockyard.client import ConnectionLost, EngineClient, StreamError
from dockyard.commands.jsonmessages import display_json_messages
from dockyard.core.hosts import parse_host
from tests.conftest import docker_cli, plugin_env, run_dockyard

BUSYBOX = Path(shutil.which("busybox") or "/bin/busybox")
NO_SUCH_IMAGE = "Error response from daemon: No such image: nope:latest\n"


# --------------------------------------------------------------------------------------------
# Helpers: tars and archives built here, the CLI run as a subprocess
# --------------------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = len(data), 0o755
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar(files: dict[str, bytes | None]) -> bytes:
    """A tar of ``files``; ``None`` is a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buffer.getvalue()


def rootfs_tar(files: dict[str, bytes] | None = None, compress: bool = False) -> bytes:
    """A busybox root filesystem plus ``files``; ``compress`` gzips it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "bin")
        _add(tar, "bin/busybox", BUSYBOX.read_bytes())
        _add(tar, "bin/sh", link="busybox")
        _add(tar, "etc")
        for name, data in (files or {}).items():
            _add(tar, name, data)
    return gzip.compress(buffer.getvalue(), mtime=0) if compress else buffer.getvalue()


def docker_archive(tags: list[str], history: list[dict], layers: list[bytes]) -> bytes:
    """A ``docker save`` archive (manifest.json, <id>.json, <dir>/layer.tar) built by hand,
    with a fixed creation date so relative times are stable while a test runs."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": history[-1]["created"],
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer) for layer in layers]},
        "history": history,
    }
    config_bytes = json.dumps(config).encode()
    config_path = f"{_digest(config_bytes)[7:]}.json"
    members = {config_path: config_bytes}
    layer_paths = []
    for layer in layers:
        layer_paths.append(f"{_digest(layer)[7:]}/layer.tar")
        members[layer_paths[-1]] = layer
    manifest = [{"Config": config_path, "RepoTags": tags, "Layers": layer_paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            if "/" in name:
                _add(tar, name.split("/")[0])
            _add(tar, name, data)
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dockyard(daemon, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_dockyard(["-H", daemon.host, *args], **kwargs)


def dockyard_argv(daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard", "-H", daemon.host, *args]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def import_image(daemon, tmp_path, reference: str = "", **files: bytes) -> str:
    path = tmp_path / f"rootfs-{len(list(tmp_path.iterdir()))}.tar"
    path.write_bytes(rootfs_tar({f"etc/{k}": v for k, v in files.items()}))
    return ok(dockyard(daemon, "import", str(path), *([reference] if reference else []))).strip()


def api_json(daemon, path: str):
    reply = daemon.request("GET", f"/v1.41{path}")
    assert reply.status == 200, reply.body
    return reply.json()


def without_created(cells: list[list[str]]) -> list[list[str]]:
    """An image table without its CREATED column: a second may pass between two listings."""
    return [row[:3] + row[4:] for row in cells]


def table(output: str) -> list[list[str]]:
    """A docker table split into cells by the header's column offsets."""
    header, *rows = output.splitlines()
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=   ))\S", header)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[a:b].strip() for a, b in bounds] for line in [header, *rows]]


# --------------------------------------------------------------------------------------------
# Formatting like docker (go-units)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "precision", "shown"),
    [
        (0, 3, "0B"),
        (999, 3, "999B"),
        (1000, 3, "1kB"),
        (1_982_259, 3, "1.98MB"),
        (1_982_259, 4, "1.982MB"),
        (999_999, 3, "1e+03kB"),  # Go's %.3g, faithfully
        (5 * 10**12, 3, "5TB"),
    ],
)
def test_sizes_are_decimal_with_significant_digits(size, precision, shown):
    assert human_size_decimal(size, precision) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "Less than a second"),  # a clock skewed ahead of ours
        (0.9, "Less than a second"),
        (1, "1 second"),
        (59.9, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (9000, "3 hours"),  # 2.5 h rounds away from zero like Go's math.Round
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (14 * 86400, "2 weeks"),
        (60 * 86400, "2 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_durations_read_like_docker(seconds, shown):
    assert human_duration(seconds) == shown


# --------------------------------------------------------------------------------------------
# images, image ls, image inspect
# --------------------------------------------------------------------------------------------


def test_import_then_list_and_inspect(daemon, tmp_path):
    plain = tmp_path / "rootfs.tar"
    plain.write_bytes(rootfs_tar({"etc/motd": b"plain\n"}))
    imported = dockyard(
        daemon,
        "import",
        "-c",
        'CMD ["/bin/sh"]',
        "-c",
        "ENV GREETING=hi",
        "-m",
        "first import",
        str(plain),
        "localhost:5000/team/base:v1",
    )
    image_id = ok(imported).strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)

    # A gzipped tar from stdin, streamed: the daemon decompresses, the client just sends.
    gzipped = tmp_path / "rootfs.tar.gz"
    gzipped.write_bytes(rootfs_tar({"etc/motd": b"gzipped\n"}, compress=True))
    with gzipped.open("rb") as stdin:
        dangling_id = ok(dockyard(daemon, "import", "-", stdin=stdin)).strip()
    assert dangling_id != image_id

    listing = ok(dockyard(daemon, "images"))
    cells = table(listing)
    assert cells[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    # docker's tabwriter: three spaces between columns, no cell narrower than 10 (with padding)
    widest_repository = len("localhost:5000/team/base")
    assert listing.startswith(
        "REPOSITORY".ljust(widest_repository + 3) + "TAG       IMAGE ID       CREATED   "
    )
    size = api_json(daemon, f"/images/{image_id}/json")["Size"]
    rows = {row[0]: row for row in cells[1:]}
    assert rows["localhost:5000/team/base"][1:3] == ["v1", image_id[7:19]]
    assert rows["localhost:5000/team/base"][4] == f"{size / 1e6:.3g}MB"
    assert re.fullmatch(r"Less than a second ago|1 second ago|\d+ seconds ago", rows["<none>"][3])
    assert rows["<none>"][1:3] == ["<none>", dangling_id[7:19]]

    for alias in ("ls", "list"):
        assert without_created(table(ok(dockyard(daemon, "image", alias)))) == without_created(
            cells
        )

    inspected = json.loads(ok(dockyard(daemon, "image", "inspect", "localhost:5000/team/base:v1")))
    assert [i["Id"] for i in inspected] == [image_id]
    assert inspected[0]["Config"]["Cmd"] == ["/bin/sh"]
    assert "GREETING=hi" in inspected[0]["Config"]["Env"]
    assert inspected[0]["Comment"] == "first import"
    assert inspected[0]["RepoTags"] == ["localhost:5000/team/base:v1"]


def test_images_options_and_filters(daemon, tmp_path):
    first = import_image(daemon, tmp_path, "alpha:1", marker=b"a")
    ok(dockyard(daemon, "tag", "alpha:1", "alpha:2"))
    second = import_image(daemon, tmp_path, "beta:1", marker=b"b")
    dangling = import_image(daemon, tmp_path, marker=b"c")

    quiet = ok(dockyard(daemon, "images", "-q")).split()
    # docker prints one ID per row, so an image with two tags is listed twice
    assert sorted(quiet) == sorted([first[7:19]] * 2 + [second[7:19], dangling[7:19]])
    assert ok(dockyard(daemon, "images", "-q", "--no-trunc")).split().count(first) == 2
    assert ok(dockyard(daemon, "images", "-a", "-q")).split() == quiet

    by_repo = table(ok(dockyard(daemon, "images", "alpha")))[1:]
    assert [row[:2] for row in by_repo] == [["alpha", "1"], ["alpha", "2"]]
    assert [r[:2] for r in table(ok(dockyard(daemon, "images", "alpha:2")))[1:]] == [["alpha", "2"]]
    assert ok(dockyard(daemon, "images", "-q", "--filter", "dangling=true")).split() == [
        dangling[7:19]
    ]
    assert ok(dockyard(daemon, "images", "-q", "-f", "reference=be*")).split() == [second[7:19]]

    rows = [
        json.loads(line) for line in ok(dockyard(daemon, "images", "--format", "json")).splitlines()
    ]
    assert {(r["Repository"], r["Tag"]) for r in rows} == {
        ("alpha", "1"),
        ("alpha", "2"),
        ("beta", "1"),
        ("<none>", "<none>"),
    }
    assert set(rows[0]) == {
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
        "VirtualSize",
    }
    as_table = table(ok(dockyard(daemon, "images", "--format", "table")))
    assert without_created(as_table) == without_created(table(ok(dockyard(daemon, "images"))))

    template = dockyard(daemon, "images", "--format", "{{.ID}}")
    assert template.returncode == 2
    assert "'{{.ID}}' is not supported: use 'table' or 'json'" in template.stderr
    bad_filter = dockyard(daemon, "images", "--filter", "dangling")
    assert (bad_filter.returncode, bad_filter.stderr) == (
        1,
        "dockyard images: bad format of filter 'dangling' (expected name=value)\n",
    )
    unknown_filter = dockyard(daemon, "images", "--filter", "colour=red")
    assert (unknown_filter.returncode, unknown_filter.stderr) == (
        1,
        "Error response from daemon: Invalid filter 'colour'\n",
    )


def test_unknown_image_is_a_daemon_error_for_every_command(daemon, tmp_path):
    for args in (
        ["history", "nope"],
        ["image", "history", "nope"],
        ["tag", "nope", "other:1"],
        ["image", "tag", "nope", "other:1"],
        ["rmi", "nope"],
        ["image", "rm", "nope"],
        ["save", "-o", str(tmp_path / "out.tar"), "nope"],
        ["image", "save", "-o", str(tmp_path / "out.tar"), "nope"],
    ):
        result = dockyard(daemon, *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_SUCH_IMAGE), args
    assert not (tmp_path / "out.tar").exists()

    # inspect prints what it found (here nothing) before the errors, as docker does
    inspected = dockyard(daemon, "image", "inspect", "nope")
    assert (inspected.returncode, inspected.stdout, inspected.stderr) == (1, "[]\n", NO_SUCH_IMAGE)


def test_inspect_several_reports_found_and_missing(daemon, tmp_path):
    image_id = import_image(daemon, tmp_path, "present:1")
    result = dockyard(daemon, "image", "inspect", "present:1", "nope", image_id[7:19])
    assert result.returncode == 1
    assert [i["Id"] for i in json.loads(result.stdout)] == [image_id, image_id]
    assert result.stdout.startswith('[\n    {\n        "Id": ')  # docker's 4-space indent
    assert result.stderr == NO_SUCH_IMAGE


# --------------------------------------------------------------------------------------------
# tag, rmi
# --------------------------------------------------------------------------------------------


def test_tag_and_rmi(daemon, tmp_path):
    image_id = import_image(daemon, tmp_path, "first:1")
    assert ok(dockyard(daemon, "tag", "first:1", "localhost:5000/second")) == ""
    assert ok(dockyard(daemon, "image", "tag", image_id[7:19], "third:x")) == ""
    tags = api_json(daemon, f"/images/{image_id}/json")["RepoTags"]
    assert sorted(tags) == ["first:1", "localhost:5000/second:latest", "third:x"]

    # the target's grammar is the daemon's to judge
    for bad_target, message in (
        ("UPPER:case", "invalid reference format: repository name (UPPER) must be lowercase"),
        (f"first@{image_id}", "refusing to create a tag with a digest reference"),
    ):
        refused = dockyard(daemon, "tag", "first:1", bad_target)
        assert (refused.returncode, refused.stderr) == (
            1,
            f"Error response from daemon: {message}\n",
        )

    conflict = dockyard(daemon, "rmi", image_id[7:19])
    assert conflict.returncode == 1
    assert conflict.stderr == (
        f"Error response from daemon: conflict: unable to delete {image_id[7:19]} "
        "(must be forced) - image is referenced in multiple repositories\n"
    )

    # a name only untags; a missing name among several is reported after the others
    untag = dockyard(daemon, "rmi", "third:x", "nope", "localhost:5000/second")
    assert untag.returncode == 1
    assert untag.stdout == "Untagged: third:x\nUntagged: localhost:5000/second:latest\n"
    assert untag.stderr == NO_SUCH_IMAGE

    ok(dockyard(daemon, "tag", "first:1", "first:2"))
    [layer] = api_json(daemon, f"/images/{image_id}/json")["RootFS"]["Layers"]
    forced = ok(dockyard(daemon, "image", "rm", "-f", image_id))
    assert sorted(forced.splitlines()) == sorted(
        ["Untagged: first:1", "Untagged: first:2", f"Deleted: {image_id}", f"Deleted: {layer}"]
    )
    assert api_json(daemon, "/images/json") == []


# --------------------------------------------------------------------------------------------
# import errors
# --------------------------------------------------------------------------------------------


def test_import_errors_are_clear(daemon, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(rootfs_tar())
    bad_change = dockyard(daemon, "import", "-c", "FROBNICATE x", str(rootfs), "never:1")
    assert bad_change.returncode == 1
    assert bad_change.stderr.startswith(
        "Error response from daemon: frobnicate is not a valid change command"
    )

    # Several MB, so the daemon refuses it long before the client has sent it all.
    not_a_tar = tmp_path / "random.bin"
    # Fixed bytes: random ones are now and then read as a tar header with a bad checksum.
    not_a_tar.write_bytes(random.Random(8).randbytes(8 << 20))
    refused = dockyard(daemon, "import", str(not_a_tar), "never:2")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error response from daemon: layer is not a valid tar archive: invalid header\n"
    )

    missing = dockyard(daemon, "import", str(tmp_path / "missing.tar"))
    assert (missing.returncode, missing.stderr) == (
        1,
        f"dockyard import: open {tmp_path / 'missing.tar'}: No such file or directory\n",
    )
    assert api_json(daemon, "/images/json") == []


# --------------------------------------------------------------------------------------------
# save, load
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(daemon, start_daemon, tmp_path):
    plain_id = import_image(daemon, tmp_path, "round/plain:1", motd=b"plain")
    gz = tmp_path / "gz.tar.gz"
    gz.write_bytes(rootfs_tar({"etc/motd": b"gz"}, compress=True))
    gz_id = ok(dockyard(daemon, "import", str(gz), "round/gz:1")).strip()
    before = {i["Id"]: i["RepoTags"] for i in api_json(daemon, "/images/json")}
    assert set(before) == {plain_id, gz_id}

    archive = tmp_path / "both.tar"
    assert ok(dockyard(daemon, "save", "-o", str(archive), "round/plain:1", "round/gz:1")) == ""
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dockyard_temp_")] == []
    assert archive.stat().st_mode & 0o777 == 0o666 & ~_umask()

    ok(dockyard(daemon, "rmi", "round/plain:1", "round/gz:1"))
    assert api_json(daemon, "/images/json") == []
    loaded = ok(dockyard(daemon, "load", "-i", str(archive)))
    assert sorted(loaded.splitlines()) == [
        "Loaded image: round/gz:1",
        "Loaded image: round/plain:1",
    ]
    assert {i["Id"]: i["RepoTags"] for i in api_json(daemon, "/images/json")} == before

    # save to stdout piped straight into another daemon's load from stdin; by ID, so untagged
    other = start_daemon(name="other")
    saver = subprocess.Popen(
        dockyard_argv(daemon, "image", "save", plain_id), stdout=subprocess.PIPE, env=plugin_env([])
    )
    loader = subprocess.run(
        dockyard_argv(other, "image", "load", "-q"),
        stdin=saver.stdout,
        capture_output=True,
        text=True,
        env=plugin_env([]),
        timeout=30,
    )
    saver.stdout.close()
    assert saver.wait(30) == 0
    assert (loader.returncode, loader.stdout, loader.stderr) == (
        0,
        f"Loaded image ID: {plain_id}\n",
        "",
    )
    assert [i["Id"] for i in api_json(other, "/images/json")] == [plain_id]

    not_an_archive = dockyard(daemon, "load", "-i", str(gz))
    assert not_an_archive.returncode == 1
    assert not_an_archive.stderr.startswith("invalid archive: ")  # in the stream, as docker
    no_dir = dockyard(daemon, "save", "-o", str(tmp_path / "missing" / "x.tar"), "round/gz:1")
    assert no_dir.returncode == 1
    assert "invalid output path: directory" in no_dir.stderr


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_save_refuses_a_terminal_and_load_an_empty_one(daemon, tmp_path):
    import_image(daemon, tmp_path, "tty:1")
    primary, secondary = pty.openpty()
    try:
        for stdout_is_terminal in (False, True):
            result = subprocess.run(
                dockyard_argv(daemon, "save", "tty:1"),
                stdout=secondary if stdout_is_terminal else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=plugin_env([]),
                timeout=30,
            )
            if stdout_is_terminal:
                assert result.returncode == 1
                assert result.stderr == (
                    b"dockyard save: cowardly refusing to save to a terminal. "
                    b"Use the -o flag or redirect\n"
                )
            else:  # the same command into a pipe works: the terminal is the reason
                assert result.returncode == 0, result.stderr
                with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
                    assert tar.getmember("manifest.json")
        os.set_blocking(primary, False)
        with pytest.raises(BlockingIOError):  # not one byte reached the terminal
            os.read(primary, 1024)

        load = subprocess.run(
            dockyard_argv(daemon, "load"),
            stdin=secondary,
            capture_output=True,
            text=True,
            env=plugin_env([]),
            timeout=30,
        )
        assert (load.returncode, load.stderr) == (
            1,
            "dockyard load: requested load from stdin, but stdin is empty\n",
        )
    finally:
        os.close(primary)
        os.close(secondary)


# VmHWM is this process image's own peak; ru_maxrss would also count the parent's memory,
# which Linux carries across the vfork and exec that start the child.
PEAK_RSS_REPORTER = (
    "import re, sys\n"
    "from dockyard.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read()\n"
    "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr)\n"
    "sys.exit(code)\n"
)
TAR_OF_ZEROS = (
    "import sys, tarfile, io\n"
    "size = int(sys.argv[1])\n"
    "class Zeros(io.RawIOBase):\n"
    "    def readable(self): return True\n"
    "    def readinto(self, b):\n"
    "        b[:] = bytes(len(b)); return len(b)\n"
    "with tarfile.open(fileobj=sys.stdout.buffer, mode='w|') as tar:\n"
    "    info = tarfile.TarInfo('big'); info.size = size\n"
    "    tar.addfile(info, io.BufferedReader(Zeros()))\n"
)


def test_import_and_save_stream_without_holding_the_image(daemon):
    """96 MiB through stdin and out again; the client's peak memory stays far below that."""
    size = 96 << 20
    producer = subprocess.Popen(
        [sys.executable, "-c", TAR_OF_ZEROS, str(size)], stdout=subprocess.PIPE
    )
    importer = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_REPORTER, "-H", daemon.host, "import", "-", "big:1"],
        stdin=producer.stdout,
        capture_output=True,
        text=True,
        env=plugin_env([]),
        timeout=60,
    )
    producer.stdout.close()
    assert producer.wait(30) == 0
    assert importer.returncode == 0, importer.stderr
    peak_kib = int(importer.stderr.split()[-1])
    assert peak_kib < 64 << 10, f"import peaked at {peak_kib} KiB"
    assert api_json(daemon, "/images/big:1/json")["Size"] >= size

    saver = subprocess.Popen(
        [sys.executable, "-c", PEAK_RSS_REPORTER, "-H", daemon.host, "save", "big:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=plugin_env([]),
    )
    received = 0
    while block := saver.stdout.read(1 << 20):
        received += len(block)
    assert saver.wait(30) == 0
    peak_kib = int(saver.stderr.read().split()[-1])
    assert received > size
    assert peak_kib < 64 << 10, f"save peaked at {peak_kib} KiB"


# --------------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------------

LONG_COMMAND = "/bin/sh -c echo 'welcome\tto dockyard' > /etc/motd && chmod 0644 /etc/motd"
HISTORY = [
    {"created": "2024-03-01T10:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:f00 in / "},
    {
        "created": "2024-03-01T10:00:01Z",
        "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
        "empty_layer": True,
    },
    {"created": "2024-03-02T11:00:00Z", "created_by": LONG_COMMAND, "comment": "motd <&>"},
]


def load_history_image(daemon, tmp_path, *tags: str) -> str:
    layers = [rootfs_tar(), layer_tar({"etc": None, "etc/motd": b"welcome\n" * 500})]
    archive = tmp_path / "history.tar"
    archive.write_bytes(docker_archive(list(tags), HISTORY, layers))
    ok(dockyard(daemon, "load", "-i", str(archive)))
    return api_json(daemon, f"/images/{tags[0]}/json")["Id"]


def test_history(daemon, tmp_path):
    image_id = load_history_image(daemon, tmp_path, "storied:1")
    cells = table(ok(dockyard(daemon, "history", "storied:1")))
    assert cells[0] == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert [row[0] for row in cells[1:]] == [image_id[7:19], "<missing>", "<missing>"]
    newest, empty, base = cells[1:]
    # tabs become spaces; cut to 45 characters with an ellipsis
    assert newest[2] == LONG_COMMAND.replace("\t", " ")[:44] + "…"
    assert newest[3].endswith("kB") and newest[4] == "motd <&>"
    assert empty[2:4] == ['/bin/sh -c #(nop)  CMD ["sh"]', "0B"]
    assert base[3].endswith("MB")
    assert all(re.fullmatch(r"\d+ (years|months) ago", row[1]) for row in cells[1:])

    full = table(ok(dockyard(daemon, "image", "history", "--no-trunc", "storied:1")))
    assert full[1][:1] == [image_id]
    assert full[1][2] == LONG_COMMAND.replace("\t", " ")
    assert ok(dockyard(daemon, "history", "-q", "storied:1")).split() == [
        image_id[7:19],
        "<missing>",
        "<missing>",
    ]
    rows = [
        json.loads(line)
        for line in ok(dockyard(daemon, "history", "--format", "json", "storied:1")).splitlines()
    ]
    assert rows[0]["CreatedAt"] == "2024-03-02T11:00:00Z"
    assert rows[0]["Comment"] == "motd <&>"
    assert set(rows[0]) == {"Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size"}


# --------------------------------------------------------------------------------------------
# image prune
# --------------------------------------------------------------------------------------------


def test_image_prune_asks_unless_forced(daemon, tmp_path):
    kept = import_image(daemon, tmp_path, "kept:1", marker=b"kept")
    dangling = import_image(daemon, tmp_path, marker=b"dangling")
    prompt = (
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    )

    declined = dockyard(daemon, "image", "prune", input="n\n")
    assert (declined.returncode, declined.stdout, declined.stderr) == (0, prompt, "")
    no_answer = dockyard(daemon, "image", "prune", input="")
    assert (no_answer.returncode, no_answer.stdout) == (0, prompt)
    assert len(api_json(daemon, "/images/json")) == 2

    dangling_size = api_json(daemon, f"/images/{dangling}/json")["Size"]
    [layer] = api_json(daemon, f"/images/{dangling}/json")["RootFS"]["Layers"]
    confirmed = ok(dockyard(daemon, "image", "prune", input="y\n"))
    assert confirmed == (
        f"{prompt}Deleted Images:\ndeleted: {dangling}\ndeleted: {layer}\n\n"
        f"Total reclaimed space: {dangling_size / 1e6:.4g}MB\n"
    )
    assert [i["Id"] for i in api_json(daemon, "/images/json")] == [kept]

    everything = ok(dockyard(daemon, "image", "prune", "-a", "-f"))
    assert everything.splitlines()[:3] == [
        "Deleted Images:",
        "untagged: kept:1",
        f"deleted: {kept}",
    ]
    assert ok(dockyard(daemon, "image", "prune", "-f")) == "Total reclaimed space: 0B\n"

    warning_all = dockyard(daemon, "image", "prune", "-a", input="n\n")
    assert warning_all.stdout.startswith(
        "WARNING! This will remove all images without at least one container associated to them."
    )


# --------------------------------------------------------------------------------------------
# The client's JSON-message stream decoding, over real HTTP bytes
# --------------------------------------------------------------------------------------------


def _chunked_response(*chunks: bytes, complete: bool = True) -> http.client.HTTPResponse:
    """A response read from real HTTP bytes; ``complete=False`` cuts it before its last chunk."""
    ours, theirs = socket.socketpair()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    body += b"0\r\n\r\n" if complete else b""
    theirs.sendall(head + body)
    theirs.close()
    response = http.client.HTTPResponse(ours)
    response.begin()
    ours.close()  # the response holds its own file object
    return response


def test_json_message_stream_split_anywhere():
    stream = (
        '{"stream":"Loaded image: caf\u00e9:1\\n"}\r\n'
        '{"status":"Extracting","progressDetail":{"current":1,"total":2},"id":"abc"}\r\n'
        '{"status":"Done","id":"abc"}{"status":"sha256:1"}\r\n'
    ).encode()
    split_in_e_acute = stream.index("\u00e9".encode()) + 1
    chunks = [stream[:split_in_e_acute], stream[split_in_e_acute:50], stream[50:]]
    out = io.StringIO()
    display_json_messages(_chunked_response(*chunks), out)
    assert out.getvalue() == "Loaded image: caf\u00e9:1\nabc: Done\nsha256:1\n"


def test_json_message_stream_error_raises_its_message():
    out = io.StringIO()
    failing = b'{"stream":"step 1\\n"}\r\n{"errorDetail":{"code":1,"message":"disk full"},"error":"disk full"}\r\n'
    with pytest.raises(StreamError, match=r"^disk full$"):
        display_json_messages(_chunked_response(failing), out)
    assert out.getvalue() == "step 1\n"
    with pytest.raises(StreamError, match=r"^old style$"):
        display_json_messages(_chunked_response(b'{"error":"old style"}'), io.StringIO())
    with pytest.raises(StreamError, match="malformed JSON message"):
        display_json_messages(_chunked_response(b'{"status":"cut'), io.StringIO())


def test_a_cut_response_is_an_error_not_a_short_file():
    client = EngineClient(parse_host("unix:///run/unused.sock"))
    whole = io.BytesIO()
    assert client.copy_response(_chunked_response(b"a" * 10, b"b" * 5), whole) == 15
    assert whole.getvalue() == b"a" * 10 + b"b" * 5
    with pytest.raises(ConnectionLost, match="the response ended after 10 bytes"):
        client.copy_response(_chunked_response(b"a" * 10, complete=False), io.BytesIO())


def test_save_output_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "saved.tar"
    target.write_bytes(b"the previous save")

    def cut_off(out) -> None:
        out.write(b"half an archive")
        raise ConnectionLost(parse_host("unix:///run/unused.sock"), "the response ended")

    with pytest.raises(ConnectionLost):
        write_atomically(str(target), cut_off)
    assert target.read_bytes() == b"the previous save"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.tar"]  # no temporary left
    write_atomically(str(target), lambda out: out.write(b"a whole archive"))
    assert target.read_bytes() == b"a whole archive"


def test_save_into_a_closed_pipe_stops_quietly(daemon, tmp_path):
    """``dockyard save x | head -c 10``: the reader went away, nothing went wrong."""
    import_image(daemon, tmp_path, "piped:1")
    saver = subprocess.Popen(
        dockyard_argv(daemon, "save", "piped:1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=plugin_env([]),
    )
    assert len(saver.stdout.read(10)) == 10
    saver.stdout.close()
    assert saver.wait(30) == 0
    assert saver.stderr.read() == b""


# --------------------------------------------------------------------------------------------
# Side by side with the real docker CLI against the same daemon
# --------------------------------------------------------------------------------------------


@pytest.mark.interop
def test_output_is_byte_for_byte_the_docker_clis(daemon, tmp_path):
    # One repository per image: docker orders an image's repositories randomly (a Go map).
    image_id = load_history_image(daemon, tmp_path, "storied:1", "storied:v2")
    # An untagged image with an old date: a <none> row, and something to prune.
    dangling = tmp_path / "dangling.tar"
    old_layer = [layer_tar({"etc": None, "etc/dangling": b"x"})]
    dangling.write_bytes(docker_archive([], HISTORY[:1], old_layer))
    ok(dockyard(daemon, "load", "-i", str(dangling)))
    not_an_archive = tmp_path / "rootfs.tar"
    not_an_archive.write_bytes(rootfs_tar())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=daemon.host, DOCKER_CONFIG=str(tmp_path / "docker-config"))

    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [docker_cli(), *args], capture_output=True, text=True, env=env, timeout=60
        )

    def outcome(result: subprocess.CompletedProcess) -> tuple[int, str, str]:
        return result.returncode, result.stdout, result.stderr

    # Read-only commands: the same daemon state for both clients.
    for args in (
        ["images"],
        ["images", "-a"],
        ["images", "storied"],
        ["images", "-q"],
        ["images", "--no-trunc"],
        ["images", "--format", "json"],
        ["image", "ls", "--format", "table"],
        ["history", "storied:1"],
        ["history", "--no-trunc", "storied:1"],
        ["history", "-q", image_id],
        ["history", "--format", "json", "storied:1"],
        ["image", "inspect", "storied:1", "nope"],
        ["rmi", image_id[7:19]],
        ["history", "nope"],
        ["save", "-o", str(tmp_path / "never.tar"), "nope"],
        ["import", "-c", "FROBNICATE x", str(not_an_archive)],
        ["load", "-i", str(not_an_archive)],
        ["load", "-i", str(tmp_path / "history.tar")],  # already there: the same lines again
    ):
        assert outcome(dockyard(daemon, *args)) == outcome(docker(*args)), args

    # Commands that change the daemon: each client runs the whole sequence in turn.
    def sequence(run) -> list[tuple[int, str, str]]:
        results = [
            run("tag", "storied:1", "extra:1"),
            run("rmi", "extra:1", "nope"),
            run("image", "prune", "-f"),
            run("image", "prune", "-f"),
        ]
        ok(dockyard(daemon, "load", "-i", str(tmp_path / "history.tar")))
        return [outcome(result) for result in results]

    for answer in ("n\n", ""):  # declined, and no answer at all
        declined_by_docker = subprocess.run(
            [docker_cli(), "image", "prune"], input=answer, capture_output=True, text=True, env=env
        )
        declined = dockyard(daemon, "image", "prune", input=answer)
        assert outcome(declined) == outcome(declined_by_docker), answer

    theirs = sequence(docker)
    ok(dockyard(daemon, "load", "-i", str(dangling)))  # what docker's prune removed
    assert sequence(lambda *args: dockyard(daemon, *args)) == theirs

    # save writes exactly the daemon's bytes, whichever client asks
    assert outcome(docker("save", "-o", str(tmp_path / "theirs.tar"), "storied:1"))[0] == 0
    ok(dockyard(daemon, "save", "-o", str(tmp_path / "ours.tar"), "storied:1"))
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "theirs.tar").read_bytes()
