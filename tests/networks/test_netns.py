"""Network namespace files (dockyard.linux.netns): made with lo up, entered, removed cleanly."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dockyard.linux import netns


def own_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def links_in(path) -> list[str]:
    return netns.run_in(path, lambda: [name for _, name in socket.if_nameindex()])


def test_a_namespace_file_holds_a_new_namespace_with_only_lo_up(tmp_path):
    path = netns.create(tmp_path / "ns")
    try:
        assert netns.is_namespace(path)
        assert links_in(path) == ["lo"]
        inside = netns.run_in(path, own_netns)
        assert inside != own_netns()
        assert inside == f"net:[{os.stat(path).st_ino}]"

        # lo is up: a TCP connection over 127.0.0.1 works inside.
        def echo() -> bytes:
            with (
                socket.create_server(("127.0.0.1", 0)) as server,
                socket.create_connection(server.getsockname(), timeout=5) as client,
            ):
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"ping")
                    return peer.recv(4)

        assert netns.run_in(path, echo) == b"ping"
    finally:
        netns.remove(path)
    assert not path.exists()
    assert not netns.is_namespace(path)
    assert str(path) not in Path("/proc/self/mountinfo").read_text()


def test_the_calling_thread_stays_in_the_host_namespace(tmp_path):
    before = own_netns()
    path = netns.create(tmp_path / "ns")
    try:
        netns.run_in(path, lambda: None)
        assert own_netns() == before
    finally:
        netns.remove(path)


def test_an_existing_path_is_refused_and_left_alone(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    with pytest.raises(FileExistsError):
        netns.create(taken)
    assert taken.read_text() == "mine"


def test_a_failure_inside_leaves_no_file_and_no_mount(tmp_path, monkeypatch):
    def refuse(flags: int) -> None:
        raise PermissionError(1, "unshare: refused for the test")

    monkeypatch.setattr(netns.syscalls, "unshare", refuse)
    with pytest.raises(PermissionError, match="refused for the test"):
        netns.create(tmp_path / "ns")
    assert list(tmp_path.iterdir()) == []


def test_errors_in_the_namespace_reach_the_caller(tmp_path):
    path = netns.create(tmp_path / "ns")
    try:
        with pytest.raises(OSError):
            netns.run_in(path, lambda: socket.if_nametoindex("eth0"))
    finally:
        netns.remove(path)
    netns.remove(path)  # twice is fine
