"""The build context: receiving it, selecting COPY/ADD sources, their checksum, copying them."""

from __future__ import annotations

import bz2
import email.utils
import gzip
import http.server
import io
import lzma
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build.context import (
    BuildContext,
    SourceTree,
    checksum,
    copy_sources,
    fetch_url,
    receive_context,
    resolve_chown,
)
from dockyard.dockerignore import Matcher

Entry = tuple[str, str | bytes | None] | tarfile.TarInfo


def context_tar(files: dict[str, str | bytes | None]) -> bytes:
    """A tar of ``files``: name -> content, ``None`` for a directory, ``"->target"`` for a
    symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_500_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            elif isinstance(data, str) and data.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                archive.addfile(info)
            else:
                content = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(content), 0o644
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def received(tmp_path: Path, files: dict[str, str | bytes | None]) -> BuildContext:
    directory = tmp_path / "context"
    directory.mkdir()
    return receive_context(io.BytesIO(context_tar(files)), directory)


# --------------------------------------------------------------------------------------------
# receive_context and the Dockerfile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_receive_plain_and_compressed(tmp_path: Path, compress) -> None:  # type: ignore[no-untyped-def]
    directory = tmp_path / "context"
    directory.mkdir()
    body = compress(context_tar({"Dockerfile": "FROM scratch\n", "sub": None, "sub/a": "a"}))
    context = receive_context(io.BytesIO(body), directory)
    assert context.dockerfile() == "FROM scratch\n"
    assert (directory / "sub/a").read_text() == "a"
    assert context.matcher is None


def test_a_bare_dockerfile_is_the_dockerfile(tmp_path: Path) -> None:
    directory = tmp_path / "context"
    directory.mkdir()
    context = receive_context(io.BytesIO(b"FROM scratch\nLABEL a=b\n"), directory)
    assert context.dockerfile() == "FROM scratch\nLABEL a=b\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x01binary garbage" * 50, "neither a tar archive"),
        (gzip.compress(b"FROM scratch\n" * 60, mtime=0), "compressed but is not a tar archive"),
        (context_tar({"../evil": "x"}), "build context entry '../evil': '..' components"),
        (context_tar({"a/../../evil": "x"}), "'..' components are not allowed"),
    ],
    ids=["garbage", "gzip-of-text", "dot-dot", "dot-dot-inside"],
)
def test_bad_contexts_are_refused_and_removed(tmp_path: Path, body: bytes, message: str) -> None:
    directory = tmp_path / "context"
    directory.mkdir()
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        receive_context(io.BytesIO(body), directory)
    assert not directory.exists()
    assert not (tmp_path / "evil").exists()


def test_a_bad_dockerignore_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "context"
    directory.mkdir()
    body = context_tar({".dockerignore": "ok\n[unclosed\n", "Dockerfile": "FROM a\n"})
    with pytest.raises(InvalidParameter, match=r"invalid \.dockerignore pattern: .*unclosed"):
        receive_context(io.BytesIO(body), directory)
    assert not directory.exists()


def test_a_hard_link_out_of_the_context_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("shadow")
        link.type, link.linkname = tarfile.LNKTYPE, "/etc/shadow"
        archive.addfile(link)
    directory = tmp_path / "context"
    directory.mkdir()
    with pytest.raises(InvalidParameter, match="'etc' is not in the build context"):
        receive_context(io.BytesIO(buffer.getvalue()), directory)


def test_escaping_symlinks_are_kept_but_resolve_inside(tmp_path: Path) -> None:
    context = received(tmp_path, {"link": "->/etc", "rel": "->../../../../etc", "a": "a"})
    assert os.readlink(context.directory / "link") == "/etc"
    tree = context.sources()
    for path in ("link/passwd", "rel/passwd"):
        with pytest.raises(InvalidParameter) as caught:
            tree.select([path])
        assert str(caught.value) == (
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            f"stat {path}: file does not exist"
        )


def test_dockerfile_errors_and_lowercase_fallback(tmp_path: Path) -> None:
    context = received(tmp_path, {"dockerfile": "FROM a\n", "empty": "", "x": "x"})
    assert context.dockerfile() == "FROM a\n"
    with pytest.raises(InvalidParameter, match=r"^Cannot locate specified Dockerfile: sub/Df$"):
        context.dockerfile("sub/Df")
    with pytest.raises(InvalidParameter, match=re.escape("the Dockerfile (empty) cannot be")):
        context.dockerfile("empty")


def test_ignored_dockerfile_and_dockerignore_stay_readable(tmp_path: Path) -> None:
    # what the CLI sends for -f outside the context: a random name, listed in .dockerignore
    context = received(
        tmp_path,
        {
            ".dockerignore": "*.md\n.dockerfile.0123\n.dockerignore\nDockerfile\n",
            ".dockerfile.0123": "FROM b\n",
            "Dockerfile": "FROM c\n",
            "a.md": "a",
            "keep.txt": "k",
        },
    )
    assert context.dockerfile(".dockerfile.0123") == "FROM b\n"
    assert context.dockerfile() == "FROM c\n"
    [everything] = context.sources().select(["."])
    assert [name for name, _, _ in everything.entries()] == ["keep.txt"]


# --------------------------------------------------------------------------------------------
# SourceTree.select
# --------------------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> BuildContext:
    return received(
        tmp_path,
        {
            ".dockerignore": "secret\n**/*.log\n",
            "Dockerfile": "FROM scratch\n",
            "a.txt": "a",
            "b.txt": "b",
            "secret": "s",
            "debug.log": "l",
            "dir": None,
            "dir/sub": None,
            "dir/sub/c.txt": "c",
            "dir/d.log": "d",
            "link": "->a.txt",
            "tosecret": "->secret",
        },
    )


def test_select_paths_globs_and_symlinks(context: BuildContext) -> None:
    tree = context.sources()
    assert [s.name for s in tree.select(["a.txt", "/dir", "./dir/sub/"])] == [
        "a.txt",
        "dir",
        "dir/sub",
    ]
    assert [s.name for s in tree.select(["*.txt", "dir/*/c.txt", "[ab].txt", "di?"])] == [
        "a.txt",
        "b.txt",
        "dir/sub/c.txt",
        "a.txt",
        "b.txt",
        "dir",
    ]
    [link] = tree.select(["link"])
    assert (link.name, link.path.name, link.is_dir) == ("link", "a.txt", False)
    [root] = tree.select(["."])
    assert root.is_dir and root.name == "."


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (
            ["nope"],
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat nope: file does not exist",
        ),
        (
            ["a.txt", "secret"],
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat secret: file does not exist",
        ),
        (
            ["tosecret"],  # a symlink to an excluded file
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat tosecret: file does not exist",
        ),
        (["nope*"], "COPY failed: no source files were specified"),
        (["*.log"], "COPY failed: no source files were specified"),
        (["../x"], "COPY failed: forbidden path outside the build context: ../x ()"),
        (["http://127.0.0.1/x"], "COPY failed: source can't be a URL for COPY"),
    ],
)
def test_select_errors_are_dockers(
    context: BuildContext, patterns: list[str], message: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        context.sources().select(patterns)
    assert str(caught.value) == message


def test_a_directory_source_leaves_out_what_dockerignore_excludes(context: BuildContext) -> None:
    [directory] = context.sources().select(["dir"])
    assert [name for name, _, _ in directory.entries()] == ["sub", "sub/c.txt"]


# --------------------------------------------------------------------------------------------
# checksum
# --------------------------------------------------------------------------------------------


def test_checksum_follows_content_name_mode_owner_not_times(tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    (tree_dir / "dir").mkdir(parents=True)
    (tree_dir / "dir/f").write_text("one")

    def current() -> str:
        return checksum(SourceTree(tree_dir).select(["dir"]))

    first = current()
    assert current() == first
    os.utime(tree_dir / "dir/f", (1, 1))
    assert current() == first, "times are not in the checksum"
    (tree_dir / "dir/f").write_text("two")
    changed_content = current()
    assert changed_content != first
    os.chmod(tree_dir / "dir/f", 0o600)
    changed_mode = current()
    assert changed_mode != changed_content
    os.chown(tree_dir / "dir/f", 5, 5)
    changed_owner = current()
    assert changed_owner != changed_mode
    os.rename(tree_dir / "dir/f", tree_dir / "dir/g")
    assert current() != changed_owner
    assert current().startswith("sha256:")


# --------------------------------------------------------------------------------------------
# copy_sources
# --------------------------------------------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    (root / "existing").mkdir()
    return root


def owner_mode(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def test_copy_rules(context: BuildContext, rootfs: Path) -> None:
    tree = context.sources()
    root = str(rootfs)

    def copy(patterns: list[str], destination: str, workdir: str = "/", **options) -> None:  # type: ignore[no-untyped-def]
        copy_sources(
            tree.select(patterns),
            root,
            destination,
            workdir,
            options.get("chown"),
            options.get("chmod"),
            options.get("is_add", False),
        )

    copy(["dir"], "/dcontents")  # a directory copies its contents
    assert sorted(os.listdir(rootfs / "dcontents")) == ["sub"]
    assert (rootfs / "dcontents/sub/c.txt").read_text() == "c"
    assert owner_mode(rootfs / "dcontents") == (0, 0, 0o755)
    copy(["a.txt"], "/newname")  # no slash, not there: a file of that name
    assert (rootfs / "newname").read_text() == "a"
    assert (rootfs / "newname").stat().st_mtime == 1_500_000_000
    copy(["a.txt"], "/existing")  # an existing directory: into it
    assert (rootfs / "existing/a.txt").read_text() == "a"
    copy(["a.txt", "b.txt"], "/multi/")
    assert sorted(os.listdir(rootfs / "multi")) == ["a.txt", "b.txt"]
    copy(["a.txt"], "rel/", workdir="/work")  # relative to WORKDIR
    assert (rootfs / "work/rel/a.txt").exists()
    copy(["a.txt"], ".", workdir="/work")
    assert (rootfs / "work/a.txt").exists()
    copy(["link"], "/sdir/")  # a symlink source is followed, named as written
    assert (rootfs / "sdir/link").read_text() == "a"
    assert not (rootfs / "sdir/link").is_symlink()
    copy(["a.txt"], "../../../up.txt")  # ".." stops at the root
    assert (rootfs / "up.txt").exists()
    with pytest.raises(InvalidParameter) as caught:
        copy(["dir"], "/newname/")  # a file is where the directory should be
    assert str(caught.value) == "failed to copy files: mkdir /newname: not a directory"
    with pytest.raises(InvalidParameter) as caught:
        copy(["a.txt", "b.txt"], "/d")
    assert str(caught.value) == (
        "When using COPY with more than one source file, the destination must be a "
        "directory and end with a /"
    )


def test_copy_chown_and_chmod(context: BuildContext, rootfs: Path) -> None:
    tree, root = context.sources(), str(rootfs)
    copy_sources(tree.select(["a.txt"]), root, "/deep/er/own.txt", "/", "bob:staff", None, False)
    assert owner_mode(rootfs / "deep/er/own.txt") == (1000, 50, 0o644)
    assert owner_mode(rootfs / "deep") == (1000, 50, 0o755)  # new parents get the owner
    assert owner_mode(rootfs / "etc")[:2] == (0, 0)  # existing ones are left alone
    copy_sources(tree.select(["dir"]), root, "/owned/", "/", "7:8", "640", False)
    assert owner_mode(rootfs / "owned/sub") == (7, 8, 0o640)
    assert owner_mode(rootfs / "owned/sub/c.txt") == (7, 8, 0o640)
    copy_sources(tree.select(["a.txt"]), root, "/uid-only", "/", "1234", None, False)
    assert owner_mode(rootfs / "uid-only")[:2] == (1234, 1234)


@pytest.mark.parametrize(
    ("chown", "message"),
    [
        ("a:b:c", "invalid chown string format: a:b:c"),
        ("nobody", "can't find uid for user nobody: no such user: nobody"),
        ("bob", "can't find gid for group bob: no such group: bob"),
        ("bob:nogroup", "can't find gid for group nogroup: no such group: nogroup"),
    ],
)
def test_chown_errors_are_dockers(rootfs: Path, chown: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        resolve_chown(chown, str(rootfs))
    assert str(caught.value) == f"unable to convert uid/gid chown string to host mapping: {message}"


def test_chown_without_passwd(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="open /etc/passwd: no such file or directory"):
        resolve_chown("bob", str(tmp_path))


def test_a_context_file_can_not_be_written_through_a_root_symlink(
    context: BuildContext, rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), rootfs / "escape")
    copy_sources(
        context.sources().select(["a.txt"]), str(rootfs), "/escape/", "/", None, None, False
    )
    assert list(outside.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/") / "a.txt").exists()


def test_add_extracts_local_tars_copy_does_not(tmp_path: Path, rootfs: Path) -> None:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        info = tarfile.TarInfo("inner/x.txt")
        info.size, info.uid = 1, 42
        archive.addfile(info, io.BytesIO(b"x"))
    context = received(tmp_path, {"t.tar.gz": inner.getvalue(), "plain.txt": "p"})
    tree, root = context.sources(), str(rootfs)
    copy_sources(tree.select(["t.tar.gz"]), root, "/x/", "/", None, None, True)
    assert (rootfs / "x/inner/x.txt").read_text() == "x"
    assert (rootfs / "x/inner/x.txt").stat().st_uid == 42
    copy_sources(tree.select(["t.tar.gz"]), root, "/y.tgz", "/", None, None, True)
    assert (rootfs / "y.tgz/inner/x.txt").exists()
    copy_sources(tree.select(["t.tar.gz"]), root, "/z/", "/", None, None, False)
    assert (rootfs / "z/t.tar.gz").is_file()
    copy_sources(tree.select(["plain.txt"]), root, "/p/", "/", None, None, True)
    assert (rootfs / "p/plain.txt").read_text() == "p"


# --------------------------------------------------------------------------------------------
# ADD <url>
# --------------------------------------------------------------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/missing.txt":
            self.send_error(404, "Not Found")
            return
        data = b"downloaded\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        if self.path != "/no-date.txt":
            self.send_header("Last-Modified", email.utils.formatdate(1_400_000_000, usegmt=True))
        if self.path == "/download/":
            self.send_header("Content-Disposition", 'attachment; filename="named.bin"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_add_url(server: str, tmp_path: Path, rootfs: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    source = fetch_url(f"{server}/file.txt", tmp_path, progress=lambda *p: seen.append(p))
    assert source.name == "file.txt" and source.remote
    assert seen == [(11, 11)]
    copy_sources([source], str(rootfs), "/url/", "/", None, None, True)
    copied = rootfs / "url/file.txt"
    assert copied.read_text() == "downloaded\n"
    assert owner_mode(copied) == (0, 0, 0o600)
    assert copied.stat().st_mtime == 1_400_000_000
    plain = fetch_url(f"{server}/no-date.txt", tmp_path)
    copy_sources([plain], str(rootfs), "/url2", "/", None, None, True)
    assert (rootfs / "url2").stat().st_mtime == 0
    assert fetch_url(f"{server}/download/", tmp_path).name == "named.bin"
    assert checksum([source]) == checksum([fetch_url(f"{server}/file.txt", tmp_path)])


def test_add_url_failures_name_the_url(server: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        fetch_url(f"{server}/missing.txt", tmp_path)
    assert str(caught.value).startswith(
        f"ADD failed: failed to GET {server}/missing.txt with status 404 Not Found"
    )
    with pytest.raises(InvalidParameter, match=re.escape('ADD failed: Get "http://127.0.0.1:1/x"')):
        fetch_url("http://127.0.0.1:1/x", tmp_path)
    with pytest.raises(InvalidParameter, match="ADD failed: cannot determine filename for source"):
        fetch_url(f"{server}/dir/", tmp_path)
    with pytest.raises(InvalidParameter, match="is larger than the 4 bytes allowed"):
        fetch_url(f"{server}/file.txt", tmp_path, limit=4)


def test_matcher_is_the_dockerignore_of_the_context(context: BuildContext) -> None:
    assert isinstance(context.matcher, Matcher)
    assert context.matcher.excluded("secret")
