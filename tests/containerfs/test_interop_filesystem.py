"""docker cp, diff, commit and export with the real docker CLI (and docker-py), run the same way
against a real dockerd and against our daemon: the results must be the same.

Known differences, not compared: ``PATH`` in the committed image's ``Env`` (our containers'
``Config.Env`` carries the default ``PATH`` when the image has none, dockerd's does not), the order of ``docker diff`` lines (dockerd's follows its
overlay2 upper directory's readdir order, ours the diff's sorted walk), and what ``export``
holds beyond the image and the container's changes (dockerd's init layer: ``.dockerenv``,
``dev/console``, ``etc/mtab``).
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import docker_load
from tests.containerfs.conftest import IMAGE_FILES

pytestmark = pytest.mark.interop

SETUP = """
$DOCKER rm -f fsc >/dev/null 2>&1; $DOCKER rmi -f cimg:v1 >/dev/null 2>&1
$DOCKER run -d --name fsc busybox sh -c 'mkdir -p /tmp/dir/sub; echo x >/tmp/dir/x.txt; \
echo y >/tmp/dir/sub/y.txt; rm /etc/group; echo mod >>/etc/passwd; touch /ready; exec sleep 3600' >/dev/null
until $DOCKER exec fsc test -f /ready; do sleep 0.1; done
"""

CASES = {
    "cp-out": """
        $DOCKER cp -q fsc:/tmp/dir $OUT/a 2>&1; $DOCKER cp fsc:/tmp/dir/. $OUT/b 2>/dev/null
        mkdir $OUT/c; $DOCKER cp fsc:/tmp/dir $OUT/c 2>/dev/null; $DOCKER cp fsc:/tmp/dir/ $OUT/c/d 2>/dev/null
        $DOCKER cp fsc:/etc/passwd $OUT/pw 2>/dev/null; $DOCKER cp fsc:/bin/sh $OUT/sh 2>/dev/null
        cd $OUT && find . | sort && cat pw a/x.txt b/sub/y.txt && readlink sh
        $DOCKER cp fsc:/tmp/dir - | tar -t | sort
        $DOCKER cp fsc:/nope $OUT/x; echo rc=$?
        $DOCKER cp fsc:/etc/passwd/ $OUT/x 2>&1 | sed 's/:.*not a directory.*/: not a directory/'
    """,
    "cp-in": """
        echo local > $OUT/file.txt; mkdir -p $OUT/srcdir/sub; echo b > $OUT/srcdir/sub/b.txt
        $DOCKER cp $OUT/file.txt fsc:/tmp/ 2>/dev/null
        $DOCKER cp $OUT/file.txt fsc:/tmp/renamed.txt 2>/dev/null
        $DOCKER cp $OUT/srcdir fsc:/tmp/ 2>/dev/null
        $DOCKER cp $OUT/srcdir fsc:/tmp/newdir 2>/dev/null
        $DOCKER cp $OUT/srcdir/. fsc:/tmp/dir 2>/dev/null
        (cd $OUT && tar -c --owner=1234 --group=4321 file.txt) | $DOCKER cp - fsc:/srv
        $DOCKER exec fsc sh -c 'cd /tmp && busybox find . /srv/file.txt | sort | while read f; do busybox stat -c "%n %a %u:%g %s" "$f"; done'
        $DOCKER cp $OUT/file.txt fsc:/no/such/; echo rc=$?
        $DOCKER cp $OUT/file.txt fsc:/no/such/file.txt; echo rc=$?
    """,
    "diff": """
        $DOCKER cp $OUT/../cp-in/file.txt fsc:/etc/added.txt 2>/dev/null || true
        $DOCKER diff fsc | sort
    """,
    "commit": """
        $DOCKER commit -c 'CMD ["cat", "/tmp/dir/x.txt"]' -c 'ENV Z=1' -m msg -a me fsc cimg:v1 >/dev/null
        $DOCKER image inspect -f '{{.Author}}|{{.Comment}}|{{json .Config.Cmd}}|{{range .Config.Env}}{{if ne (slice . 0 5) "PATH="}}{{.}} {{end}}{{end}}|{{json .ContainerConfig.Cmd}}|{{.Config.Hostname | len}}|{{len .RootFS.Layers}}' cimg:v1
        $DOCKER run --rm cimg:v1
        $DOCKER inspect -f '{{.State.Status}}' fsc
        $DOCKER commit --pause=false fsc >/dev/null && echo committed-unpaused
        $DOCKER commit nosuch; echo rc=$?
    """,
    "export": """
        $DOCKER export -o $OUT/exp.tar fsc
        tar -tf $OUT/exp.tar | grep -E '^(tmp|etc/passwd|etc/group|bin/sh$|srv)' | sort
        $DOCKER export fsc | tar -xO etc/passwd
    """,
    "copy-uid-gid": """
        echo owned > $OUT/owned.txt; chown 1234:4321 $OUT/owned.txt
        $DOCKER rm -f usr >/dev/null 2>&1
        $DOCKER run -d --name usr --user nobody busybox sleep 3600 >/dev/null
        $DOCKER cp $OUT/owned.txt usr:/tmp/plain.txt 2>/dev/null
        $DOCKER cp -a $OUT/owned.txt usr:/tmp/archive.txt 2>/dev/null
        $DOCKER cp -a $OUT/owned.txt fsc:/tmp/archive-root-user.txt 2>/dev/null
        $DOCKER exec usr busybox stat -c "%n %u:%g %a" /tmp/plain.txt /tmp/archive.txt
        $DOCKER exec fsc busybox stat -c "%n %u:%g %a" /tmp/archive-root-user.txt
        $DOCKER rm -f usr >/dev/null
    """,
    "stopped": """
        $DOCKER stop -t 0 fsc >/dev/null
        $DOCKER cp fsc:/tmp/dir $OUT/s 2>/dev/null && find $OUT/s | sed "s|$OUT||" | sort
        echo stopped > $OUT/f.txt; $DOCKER cp $OUT/f.txt fsc:/tmp/ 2>/dev/null
        $DOCKER start fsc >/dev/null; $DOCKER exec fsc cat /tmp/f.txt
        $DOCKER diff fsc | sort
    """,
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fs-interop") / "busybox.tar"
    layer = busybox_rootfs(IMAGE_FILES)
    path.write_bytes(
        image_archive([layer], ["busybox:latest"], config_extra={"config": {"Cmd": ["sh"]}})
    )
    return path


@pytest.fixture(scope="module")
def engines(real_dockerd, shared_daemon, archive) -> dict[str, str]:
    hosts = {"dockerd": real_dockerd.host, "dockyard": shared_daemon.host}
    for host in hosts.values():
        docker_load(host, archive)
        setup = subprocess.run(
            ["sh", "-c", SETUP],
            env={**docker_env(host), "DOCKER": docker_cli()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert setup.returncode == 0, setup.stderr
    yield hosts
    for host in hosts.values():
        subprocess.run([docker_cli(), "rm", "-f", "fsc"], env=docker_env(host), capture_output=True)


def run_case(host: str, case: str, base: Path) -> str:
    out = base / case
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["sh", "-c", CASES[case]],
        env={**docker_env(host), "DOCKER": docker_cli(), "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = f"{done.stdout}\n--- stderr\n{done.stderr}".replace(str(out), "$OUT")
    # The CLI's own complaint when the daemon answers before reading the body is a race.
    text = re.sub(r'time="[^"]*" level=error msg="Can\'t [^\n]*closed pipe"\n', "", text)
    return re.sub(r'time="[^"]*" ', "", text)


@pytest.mark.parametrize("case", list(CASES))
def test_same_as_dockerd(engines, case, tmp_path):
    theirs = run_case(engines["dockerd"], case, tmp_path / "dockerd")
    ours = run_case(engines["dockyard"], case, tmp_path / "dockyard")
    assert ours == theirs


def test_docker_py_archives_and_commit(engines):
    docker = pytest.importorskip("docker")
    results = {}
    for engine, host in engines.items():
        client = docker.DockerClient(base_url=host, version="1.41")
        try:
            container = client.containers.get("fsc")
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                info = tarfile.TarInfo("py.txt")
                info.size, info.uid, info.mode = 3, 42, 0o600
                archive.addfile(info, io.BytesIO(b"py\n"))
            put = container.put_archive("/tmp", buffer.getvalue())
            stream, stat = container.get_archive("/tmp/py.txt")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.getmembers()[0]
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
            image = container.commit(
                repository="pyc", tag="1", message="m", author="a", changes=["ENV P=1"]
            )
            config = image.attrs["Config"]
            results[engine] = (
                put,
                {k: v for k, v in stat.items() if k != "mtime"},
                (member.name, member.uid, member.mode, data),
                (
                    image.attrs["Author"],
                    image.attrs["Comment"],
                    [entry for entry in config["Env"] if not entry.startswith("PATH=")],
                    config["Cmd"],
                ),
                image.attrs["Container"] == container.id,
            )
            try:
                container.get_archive("/nope")
            except docker.errors.NotFound as exc:
                results[engine] += (str(exc.explanation).replace(container.id, "ID"),)
            client.images.remove("pyc:1")
        finally:
            client.close()
    assert results["dockyard"] == results["dockerd"]
