"""``dockyard build``: the request it sends (query, headers, the context tar) and what it prints
from a daemon's stream, against a stub ``/build`` (:mod:`tests.build.build_stub`).

The streams fed to it are the ones recorded from dockerd 20.10 (engine-api-2.md §2.3, §2.4).
The docker CLI is run against the same stub with the same flags in
``test_cli_build_interop.py``; here are the rules checked on our client alone.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import pty
import re
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.build.build_stub import BuildStub, build_stub
from tests.conftest import plugin_env

IMAGE_ID = "sha256:14ad2a0d648ae60f7bab6b2bff9a8ec1091332ebfa0893485cf1c7461c90d326"

#: A successful build as dockerd 20.10 streams it (engine-api-2.md §2.3, shortened).
SUCCESS = [
    {"stream": "Step 1/3 : FROM busybox AS s1"},
    {"stream": "\n"},
    {"stream": " ---> 918c5142bdb1\n"},
    {"stream": "Step 2/3 : RUN echo never"},
    {"stream": "\n"},
    {"stream": " ---> Running in b7507e0dcfba\n"},
    {"stream": "never\n"},
    {"stream": "\x1b[91mto-stderr\n\x1b[0m"},
    {"stream": "Removing intermediate container b7507e0dcfba\n"},
    {"stream": " ---> ab1d02bf3e45\n"},
    {"aux": {"ID": "sha256:ab1d02bf3e45" + "0" * 52}},
    {"stream": "Step 3/3 : COPY hello.txt ."},
    {"stream": "\n"},
    {"stream": " ---> Using cache\n"},
    {"stream": " ---> 14ad2a0d648a\n"},
    {"aux": {"ID": IMAGE_ID}},
    {"stream": "Successfully built 14ad2a0d648a\n"},
    {"stream": "Successfully tagged t1:latest\n"},
]
#: A failing RUN (engine-api-2.md §2.4).
FAILURE_MESSAGE = (
    "The command '/bin/sh -c echo before && echo to-stderr >&2 && exit 3' "
    "returned a non-zero code: 3"
)
FAILURE = [
    {"stream": "Step 1/2 : FROM busybox"},
    {"stream": "\n"},
    {"stream": " ---> 918c5142bdb1\n"},
    {"stream": "Step 2/2 : RUN echo before && echo to-stderr >&2 && exit 3"},
    {"stream": "\n"},
    {"stream": " ---> Running in 338b870535c3\n"},
    {"stream": "before\n"},
    {"stream": "\x1b[91mto-stderr\n\x1b[0m"},
    {"errorDetail": {"code": 3, "message": FAILURE_MESSAGE}, "error": FAILURE_MESSAGE},
]


def stream_text(messages: list[dict]) -> bytes:
    return "".join(m.get("stream", "") for m in messages).encode()


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[BuildStub]:
    with build_stub(str(tmp_path / "stub.sock"), SUCCESS) as running:
        yield running


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A context: a Dockerfile, files, a directory, a symlink, a hard link, a FIFO, a
    .dockerignore with an exception, and files it leaves out."""
    root = tmp_path / "ctx"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    (root / "hello.txt").write_text("hello\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o750)
    (root / "src" / "a.py").write_text("a = 1\n")
    (root / "src" / "deep" / "b.log").write_text("log\n")
    (root / "src" / "deep" / "keep.log").write_text("kept\n")
    (root / "secret.env").write_text("TOKEN=x\n")
    (root / "link").symlink_to("hello.txt")
    os.mkfifo(root / "pipe")  # sent as a FIFO, never opened
    os.link(root / "hello.txt", root / "hello-again.txt")
    (root / ".dockerignore").write_text("# comment\n*.env\n**/*.log\n!src/deep/keep.log\n")
    return root


def build(
    stub: BuildStub,
    *args: str,
    cwd: Path | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``dockyard -H STUB build ARGS`` with bytes in and out (the exact ``\\r`` matter)."""
    return subprocess.run(
        [sys.executable, "-m", "dockyard", "-H", stub.host, "build", *args],
        capture_output=True,
        input=input,
        cwd=cwd,
        env=env or plugin_env([], DOCKYARD_CONFIG=str(Path(stub.socket_path).parent / "cfg")),
        timeout=120,
    )


def with_a_socket(context: Path) -> Path:
    """A socket in ``context``: a tar cannot hold one, so it is left out, with a warning."""
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(context / "sock"))
    return context / "sock"


def test_a_directory_context_is_sent_as_docker_sends_it(stub: BuildStub, context: Path) -> None:
    sock = with_a_socket(context)
    done = build(stub, str(context))
    assert done.returncode == 0, done.stderr
    sock = context / "sock"
    assert (
        done.stderr.decode() == f"{sock} is left out of the context: a tar cannot hold a socket\n"
    )
    sent = stub.last
    assert sent.path == "/v1.41/build"
    # Only what differs from the daemon's defaults (engine-api-2.md §2.2).
    assert sent.query == {"dockerfile": ["Dockerfile"], "version": ["1"]}
    assert sent.headers["Content-Type"] == "application/x-tar"
    assert sent.headers["Transfer-Encoding"] == "chunked"
    assert sent.headers["X-Registry-Config"] == "e30="
    # Name order, parents first; left out: *.env and **/*.log but the exception.
    assert sent.names == [
        ".dockerignore", "Dockerfile", "hello-again.txt", "hello.txt", "link", "pipe", "run.sh",
        "src/", "src/a.py", "src/deep/", "src/deep/keep.log",
    ]  # fmt: skip
    assert {(e.uid, e.gid) for e in sent.entries} == {(0, 0)}
    assert sent.entry("run.sh").mode == 0o750
    assert sent.entry("src/deep/keep.log").content == b"kept\n"
    assert sent.entry("link").type == tarfile.SYMTYPE and sent.entry("link").linkname == "hello.txt"
    assert sent.entry("pipe").type == tarfile.FIFOTYPE
    # The second name of a file is a hard link to the first one sent.
    assert sent.entry("hello.txt").type == tarfile.LNKTYPE
    assert sent.entry("hello.txt").linkname == "hello-again.txt"
    assert sent.entry("hello-again.txt").content == b"hello\n"


def test_every_flag_goes_into_the_query(stub: BuildStub, context: Path) -> None:
    env = plugin_env([], FROM_ENV="env-value", DOCKYARD_CONFIG=str(context.parent / "cfg"))
    env.pop("NOT_SET", None)
    done = build(
        stub, "-t", "t1", "-t", "registry.local:5000/x/y:2", "--build-arg", "A=1",
        "--build-arg", "FROM_ENV", "--build-arg", "NOT_SET", "--target", "s2", "--no-cache",
        "--label", "k=v", "--label", "empty=", "--rm=false", "--force-rm",
        "--cache-from", "base:1", "--network", "none", "--add-host", "db:10.0.0.7",
        "--shm-size", "64m", "-f", str(context / "src" / "a.py"), str(context),
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    query = stub.last.query
    assert query.pop("t") == ["t1", "registry.local:5000/x/y:2"]
    assert json.loads(query.pop("buildargs")[0]) == {
        "A": "1",
        "FROM_ENV": "env-value",
        "NOT_SET": None,
    }
    assert json.loads(query.pop("labels")[0]) == {"k": "v", "empty": ""}
    assert json.loads(query.pop("cachefrom")[0]) == ["base:1"]
    assert query == {
        "dockerfile": ["src/a.py"],
        "target": ["s2"],
        "nocache": ["1"],
        "rm": ["0"],
        "forcerm": ["1"],
        "networkmode": ["none"],
        "extrahosts": ["db:10.0.0.7"],
        "shmsize": [str(64 * 1024 * 1024)],
        "version": ["1"],
    }


def test_a_dockerfile_the_patterns_exclude_is_still_sent(stub: BuildStub, context: Path) -> None:
    (context / ".dockerignore").write_text("*\n")
    done = build(stub, str(context))
    assert done.returncode == 0, done.stderr
    assert stub.last.names == [".dockerignore", "Dockerfile"]


def test_a_lowercase_dockerfile_is_found(stub: BuildStub, context: Path) -> None:
    (context / "Dockerfile").rename(context / "dockerfile")
    assert build(stub, str(context)).returncode == 0
    assert stub.last.query["dockerfile"] == ["dockerfile"]


@pytest.mark.parametrize("with_dockerignore", [True, False])
def test_a_dockerfile_outside_the_context_gets_a_random_name(
    stub: BuildStub, context: Path, with_dockerignore: bool
) -> None:
    if not with_dockerignore:
        (context / ".dockerignore").unlink()
    outside = context.parent / "other.Dockerfile"
    outside.write_text("FROM busybox\n")
    # -f is relative to the current directory, not to the context.
    done = build(stub, "-f", "other.Dockerfile", "ctx", cwd=context.parent)
    assert done.returncode == 0, done.stderr
    (name,) = stub.last.query["dockerfile"]
    assert re.fullmatch(r"\.dockerfile\.[0-9a-f]{20}", name)
    assert stub.last.entry(name).content == b"FROM busybox\n"
    assert stub.last.entry(name).mode == 0o600
    ignore = stub.last.entry(".dockerignore").content
    assert ignore is not None
    before = (context / ".dockerignore").read_text() if with_dockerignore else ".dockerignore"
    assert ignore.decode() == f"{before}\n{name}\n"
    assert stub.last.names.count(".dockerignore") == 1


def test_a_dockerfile_on_stdin_goes_in_beside_the_directory(stub: BuildStub, context: Path) -> None:
    done = build(stub, "-f", "-", str(context), input=b"FROM scratch\n")
    assert done.returncode == 0, done.stderr
    (name,) = stub.last.query["dockerfile"]
    assert name.startswith(".dockerfile.")
    assert stub.last.entry(name).content == b"FROM scratch\n"
    assert "src/a.py" in stub.last.names


@pytest.mark.parametrize("compress", [False, True])
def test_a_tar_on_stdin_is_sent_as_it_is(stub: BuildStub, compress: bool) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("Dockerfile", b"FROM busybox\n"), ("f.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = gzip.compress(buffer.getvalue()) if compress else buffer.getvalue()
    done = build(stub, "-f", "Dockerfile", "-", input=data)
    assert done.returncode == 0, done.stderr
    assert stub.last.body_size == len(data)
    assert stub.last.head == data[:1024]
    assert stub.last.names == ["Dockerfile", "f.txt"]
    assert stub.last.query["dockerfile"] == ["Dockerfile"]


def test_a_dockerfile_on_stdin_is_the_whole_context(stub: BuildStub) -> None:
    done = build(stub, "-", input=b"FROM busybox\nRUN true\n")
    assert done.returncode == 0, done.stderr
    assert stub.last.names == ["Dockerfile"]
    assert stub.last.entry("Dockerfile").content == b"FROM busybox\nRUN true\n"


def test_stored_logins_go_in_x_registry_config(stub: BuildStub, context: Path) -> None:
    config = Path(stub.socket_path).parent / "cfg"
    config.mkdir()
    auths = {
        "127.0.0.1:5182": {"auth": base64.b64encode(b"hfuser:hfpass").decode()},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "listed-only:1": {},
    }
    (config / "config.json").write_text(json.dumps({"auths": auths}))
    assert build(stub, str(context)).returncode == 0
    header = stub.last.headers["X-Registry-Config"]
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "127.0.0.1:5182": {
            "username": "hfuser",
            "password": "hfpass",
            "serveraddress": "127.0.0.1:5182",
        },
        "https://index.docker.io/v1/": {
            "username": "hub",
            "password": "pw",
            "serveraddress": "https://index.docker.io/v1/",
        },
    }


# ----------------------------------------------------------------------------- the output


def test_the_stream_is_printed_as_the_daemon_sends_it(stub: BuildStub, context: Path) -> None:
    done = build(stub, str(context))
    assert done.returncode == 0, done.stderr
    size = stub.last.body_size
    counter = f"Sending build context to Docker daemon {f'{size / 1000:.4g}kB':>8}\r\r\n"
    assert done.stdout == counter.encode() + stream_text(SUCCESS)
    assert done.stderr == b""


def test_quiet_prints_only_the_image_id(tmp_path: Path, context: Path) -> None:
    with build_stub(str(tmp_path / "q.sock"), [{"stream": IMAGE_ID + "\n"}]) as stub:
        done = build(stub, "-q", "-t", "t1", str(context))
        assert stub.last.query["q"] == ["1"]
    assert done.returncode == 0, done.stderr
    assert done.stdout == IMAGE_ID.encode() + b"\n"
    assert done.stderr == b""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_failing_step_exits_with_its_code(tmp_path: Path, context: Path, quiet: bool) -> None:
    with build_stub(str(tmp_path / "f.sock"), FAILURE) as stub:
        done = build(stub, *(["-q"] if quiet else []), str(context))
    assert done.returncode == 3
    shown = stream_text(FAILURE)
    counter = b"Sending build context to Docker daemon"
    if quiet:  # all that was kept back, then the error
        assert done.stdout == b""
        assert done.stderr.startswith(counter)
        assert done.stderr.endswith(shown + FAILURE_MESSAGE.encode() + b"\n")
    else:
        assert done.stdout.startswith(counter) and done.stdout.endswith(shown)
        assert done.stderr == FAILURE_MESSAGE.encode() + b"\n"


def test_an_error_without_a_code_exits_1(tmp_path: Path, context: Path) -> None:
    messages = [{"errorDetail": {"message": "no such stage"}, "error": "no such stage"}]
    with build_stub(str(tmp_path / "e.sock"), messages) as stub:
        done = build(stub, str(context))
    assert (done.returncode, done.stderr) == (1, b"no such stage\n")


def test_a_refused_build_is_the_daemons_message(stub: BuildStub, context: Path) -> None:
    """An HTTP error status (our daemon before its builder: 404) once the context is sent."""
    stub.refusal = "page not found"
    done = build(stub, str(context))
    assert done.returncode == 1
    assert done.stdout.startswith(b"Sending build context to Docker daemon  ")
    assert done.stdout.endswith(b"B\r\r\n")
    assert done.stderr == b"Error response from daemon: page not found\n"


def test_an_unreachable_daemon_is_reported(tmp_path: Path, context: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dockyard", "-H", f"unix://{tmp_path}/none.sock", "build",
         str(context)],
        capture_output=True, text=True, env=plugin_env([]), timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot connect to the dockyard daemon" in done.stderr


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--build-arg", "=x"], 'invalid argument "=x" for "--build-arg" flag'),
        (["-t", "Bad:Name"], 'invalid argument "Bad:Name" for "-t, --tag" flag'),
        (["-t", "x:"], 'invalid argument "x:" for "-t, --tag" flag: invalid reference format'),
        (["--add-host", "nocolon"], 'invalid argument "nocolon" for "--add-host" flag'),
        (["--shm-size", "lots"], 'invalid argument "lots" for "--shm-size" flag'),
        (
            ["-f", "/no/such/Dockerfile"],
            'Cannot locate specified Dockerfile: "/no/such/Dockerfile"',
        ),
    ],
)
def test_bad_flags_are_refused_before_sending(
    stub: BuildStub, context: Path, args: list[str], message: str
) -> None:
    done = build(stub, *args, str(context))
    assert done.returncode == 1
    assert message in done.stderr.decode()
    assert stub.requests == []


def test_bad_contexts_are_refused_before_sending(stub: BuildStub, tmp_path: Path) -> None:
    missing = build(stub, str(tmp_path / "nope"))
    assert missing.returncode == 1 and b"unable to prepare context" in missing.stderr
    (tmp_path / "file").write_text("x")
    not_dir = build(stub, str(tmp_path / "file"))
    assert b"context must be a directory" in not_dir.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_dockerfile = build(stub, str(empty))
    assert b"Cannot locate specified Dockerfile" in no_dockerfile.stderr
    remote = build(stub, "https://example.com/ctx.tar")
    assert b"remote context" in remote.stderr
    both = build(stub, "-f", "-", "-", input=b"FROM busybox\n")
    assert b"can't use stdin for both build context and dockerfile" in both.stderr
    ambiguous = build(stub, "-f", "Dockerfile", "-", input=b"FROM busybox\n")
    assert b"ambiguous Dockerfile source" in ambiguous.stderr
    (empty / "Dockerfile").write_text("FROM busybox\n")
    (empty / ".dockerignore").write_text("[unclosed\n")
    bad_pattern = build(stub, str(empty))
    assert bad_pattern.returncode == 1 and b".dockerignore" in bad_pattern.stderr
    assert stub.requests == []


# ----------------------------------------------------------------------------- size


def test_a_large_context_is_streamed_in_bounded_memory(stub: BuildStub, tmp_path: Path) -> None:
    """A 512 MiB context costs the client a few MiB beyond its start-up, not its size."""
    root = tmp_path / "big"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox\n")
    size = 512 * 1024 * 1024
    with open(root / "big.bin", "wb") as big:
        big.truncate(size)  # sparse: cheap to make and to read
    # The peak is the process's own (VmHWM, of the program after exec): the child's rusage
    # would count the test process's memory too, which the child shares until its exec.
    peak_file = tmp_path / "peak"
    measured = (
        "import runpy, sys\n"
        "sys.argv = ['dockyard', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('dockyard', run_name='__main__')\n"
        "finally:\n"
        "    status = open('/proc/self/status').read()\n"
        "    peak = next(l for l in status.splitlines() if l.startswith('VmHWM:'))\n"
        f"    open({str(peak_file)!r}, 'w').write(peak.split()[1])\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", measured, "-H", stub.host, "build", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=plugin_env([]),
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert stub.last.entry("big.bin").size == size
    assert stub.last.body_size > size
    peak_kib = int(peak_file.read_text())
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"


# ----------------------------------------------------------------------------- beside docker


def docker_build(stub: BuildStub, *args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """The docker CLI's classic build against the stub, with its own copy of the logins."""
    config = Path(stub.socket_path).parent / "cfg"
    env = {**docker_env(stub.host, config), "DOCKER_BUILDKIT": "0", **kwargs.pop("env", {})}
    return subprocess.run(
        [docker_cli(), "build", *args], capture_output=True, env=env, timeout=120, **kwargs
    )


def comparable(request: Any) -> dict[str, Any]:
    """What both clients must send alike (the random Dockerfile name aside)."""
    query = dict(request.query)
    for key in ("buildargs", "labels", "cachefrom"):
        if key in query:
            query[key] = [json.loads(value) for value in query[key]]
    return {
        "query": query,
        "content_type": request.headers.get("Content-Type"),
        "registry_config": json.loads(base64.urlsafe_b64decode(
            request.headers.get("X-Registry-Config", "")
        )),
        "entries": [
            (e.name, e.type, e.mode, e.uid, e.gid, e.size, e.linkname, e.content)
            for e in request.entries
        ],
        "body_size": request.body_size,
    }  # fmt: skip


@pytest.mark.interop
def test_the_request_is_the_docker_clis(stub: BuildStub, context: Path) -> None:
    config = Path(stub.socket_path).parent / "cfg"
    config.mkdir()
    with_a_socket(context)
    login = {"auth": base64.b64encode(b"hfuser:hfpass").decode()}
    (config / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5182": login}}))
    flags = [
        "-t", "t1", "-t", "t2:v", "--build-arg", "A=1", "--build-arg", "NOT_SET",
        "--target", "s2", "--no-cache", "--label", "k=v", "--rm=false", "--force-rm",
        "--network", "none", "--add-host", "db:10.0.0.7", "--shm-size", "64m",
        "--cache-from", "base:1", "-f", str(context / "Dockerfile"), str(context),
    ]  # fmt: skip
    env = {"NOT_SET": ""}
    env_ours = plugin_env([], DOCKYARD_CONFIG=str(config))
    env_ours.pop("NOT_SET", None)
    theirs = docker_build(stub, *flags)
    assert theirs.returncode == 0, theirs.stderr
    docker_sent = comparable(stub.last)
    ours = build(stub, *flags, env=env_ours)
    assert ours.returncode == 0, ours.stderr
    del env
    assert comparable(stub.last) == docker_sent
    assert ours.stdout == theirs.stdout


def without_random_names(sent: dict[str, Any]) -> dict[str, Any]:
    """``sent`` with the random ``.dockerfile.<hex>`` name made one placeholder."""
    random_name = re.compile(rb"\.dockerfile\.[0-9a-f]{20}")
    sent["query"]["dockerfile"] = [
        random_name.sub(b"RANDOM", name.encode()).decode() for name in sent["query"]["dockerfile"]
    ]
    sent["entries"] = [
        (random_name.sub(b"RANDOM", name.encode()).decode(), *rest[:-1],
         random_name.sub(b"RANDOM", rest[-1]) if rest[-1] else rest[-1])
        for name, *rest in sent["entries"]
    ]  # fmt: skip
    return sent


@pytest.mark.interop
@pytest.mark.parametrize(
    ("flags", "data"),
    [
        (["-f", "{outside}", "{context}"], None),
        (["-f", "-", "{context}"], b"FROM busybox\n"),
        (["-"], b"FROM busybox\nRUN true\n"),
    ],
    ids=["outside", "dockerfile-on-stdin", "stdin-context"],
)
def test_added_dockerfiles_and_stdin_contexts_as_the_docker_cli(
    stub: BuildStub, context: Path, flags: list[str], data: bytes | None
) -> None:
    outside = context.parent / "other.Dockerfile"
    outside.write_text("FROM busybox\n")
    flags = [flag.format(outside=outside, context=context) for flag in flags]
    theirs = docker_build(stub, *flags, input=data)
    assert theirs.returncode == 0, theirs.stderr
    docker_complete = stub.last.complete
    docker_sent = without_random_names(comparable(stub.last))
    ours = build(stub, *flags, input=data)
    assert ours.returncode == 0, ours.stderr
    assert stub.last.complete  # ours always ends as a tar should
    sent = without_random_names(comparable(stub.last))
    if not docker_complete:
        # The docker CLI's added Dockerfile ends its tar without padding or end blocks.
        del sent["body_size"], docker_sent["body_size"]
    assert sent == docker_sent
    # The counter counts the tar as sent, which is shorter from docker when it is cut.
    counter = re.compile(rb"daemon  [0-9.]+k?B")
    assert counter.sub(b"", ours.stdout) == counter.sub(b"", theirs.stdout)


@pytest.mark.interop
@pytest.mark.parametrize("quiet", [False, True])
def test_a_failure_is_shown_and_exits_as_the_docker_cli(
    tmp_path: Path, context: Path, quiet: bool
) -> None:
    flags = [*(["-q"] if quiet else []), str(context)]
    with build_stub(str(tmp_path / "f.sock"), FAILURE) as stub:
        theirs = docker_build(stub, *flags)
        ours = build(stub, *flags)
    assert ours.returncode == theirs.returncode == 3
    assert ours.stdout == theirs.stdout
    # docker's stderr starts with its warning that the classic builder is deprecated.
    assert theirs.stderr.endswith(ours.stderr)


def in_terminal(command: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """``command`` run in a pseudo-terminal: its exit status and all it wrote there."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec, or leave at once without the parent's clean-ups
        try:
            os.execvpe(command[0], command, env)
        finally:
            os._exit(127)
    output = b""
    with contextlib.suppress(OSError):  # EIO: the terminal's other end closed
        while data := os.read(fd, 1 << 16):
            output += data
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.interop
def test_on_a_terminal_the_counter_is_redrawn_as_the_docker_cli_draws_it(
    stub: BuildStub, context: Path
) -> None:
    with open(context / "big.bin", "wb") as big:
        big.truncate(30_000_000)  # sparse
    env = plugin_env([])
    status, ours = in_terminal(
        [sys.executable, "-m", "dockyard", "-H", stub.host, "build", str(context)], env
    )
    assert status == 0, ours
    docker_status, theirs = in_terminal(
        [docker_cli(), "build", str(context)], {**docker_env(stub.host), "DOCKER_BUILDKIT": "0"}
    )
    assert docker_status == 0, theirs
    theirs = theirs[theirs.index(b"Sending build context") :]  # after docker's warning
    # Redraws come as often as time allows; the last one, and all after it, are the same.
    ours_counter, ours_rest = ours.split(b"\r\r\r\n", 1)  # the terminal adds its \r to \n
    theirs_counter, theirs_rest = theirs.split(b"\r\r\r\n", 1)
    assert ours_counter.rpartition(b"\r")[2] == theirs_counter.rpartition(b"\r")[2]
    assert ours_counter.rpartition(b"\r")[2] == b"Sending build context to Docker daemon  30.01MB"
    assert ours_rest == theirs_rest == stream_text(SUCCESS).replace(b"\n", b"\r\n")


@pytest.mark.interop
def test_excluded_build_files_are_sent_where_the_docker_cli_sends_them(
    stub: BuildStub, context: Path
) -> None:
    """A Dockerfile and .dockerignore the patterns exclude are sent all the same, in the walk's
    order, with the other files below an excluded directory left out."""
    (context / "src" / "deep" / "Dockerfile.dev").write_text("FROM busybox\n")
    (context / ".dockerignore").write_text("*\n!src/a.py\n!zz\n")
    (context / "zz").write_text("last\n")
    flags = ["-f", str(context / "src" / "deep" / "Dockerfile.dev"), str(context)]
    theirs = docker_build(stub, *flags)
    assert theirs.returncode == 0, theirs.stderr
    docker_sent = comparable(stub.last)
    ours = build(stub, *flags)
    assert ours.returncode == 0, ours.stderr
    assert comparable(stub.last) == docker_sent
    assert stub.last.names == [".dockerignore", "src/a.py", "src/deep/Dockerfile.dev", "zz"]
