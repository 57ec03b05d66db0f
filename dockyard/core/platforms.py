"""This machine's platform as Go, docker and image indexes name it (``linux/amd64``).

Standard library only: the client shows it in ``dockyard version`` too.
"""

from __future__ import annotations

import platform

#: ``uname -m`` -> GOARCH, for the machines an image index may list.
_GO_ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def go_arch() -> str:
    """This machine's architecture as GOARCH spells it (``amd64``, ``arm64``...)."""
    machine = platform.machine()
    return _GO_ARCHITECTURES.get(machine, machine)
