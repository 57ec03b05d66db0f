"""The files the daemon writes for a container's ``/etc``: ``hostname``, ``hosts``, ``resolv.conf``.

They live in the container's state directory and the runtime bind-mounts them at their
container paths (``ContainerSpec.etc_files``), as docker does, so a container's edits stay in
its own copies.
"""

from __future__ import annotations

from pathlib import Path


def write_etc_files(
    directory: Path, hostname: str, network_host: bool
) -> tuple[tuple[str, str], ...]:
    """Write the container's ``/etc/hostname``, ``resolv.conf`` and ``hosts`` in ``directory``;
    returns (host file, container path) pairs, as ``ContainerSpec.etc_files`` holds them."""
    hosts = directory / "hosts"
    host_hosts = Path("/etc/hosts")
    if network_host and host_hosts.is_file():
        # The host's names on the host's network, as a copy: the container's writes to its
        # /etc/hosts must not reach the host's.
        hosts.write_text(host_hosts.read_text(errors="replace"))
    else:
        hosts.write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
            f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    (directory / "hostname").write_text(f"{hostname}\n")
    resolv = directory / "resolv.conf"
    try:
        resolv.write_text(Path("/etc/resolv.conf").read_text())
    except OSError:
        resolv.write_text("")
    return (
        (str(directory / "hostname"), "/etc/hostname"),
        (str(resolv), "/etc/resolv.conf"),
        (str(hosts), "/etc/hosts"),
    )
