"""This machine's platform as Go, docker and image indexes name it (``linux/amd64``).

Standard library only: the client shows it in ``dockyard version`` too.
"""

from __future__ import annotations

import dataclasses
import platform
import re

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


# --------------------------------------------------------------------------------------------
# Platform specifiers (``docker create --platform``), read as containerd reads them
# --------------------------------------------------------------------------------------------

#: The operating systems Go knows: a one-word specifier that is one of them names an OS.
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "js", "linux", "nacl",
    "netbsd", "openbsd", "plan9", "solaris", "windows", "zos",
))  # fmt: skip
#: The architectures Go knows: otherwise a one-word specifier must be one of them.
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "mips",
    "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390",
    "s390x", "sparc", "sparc64", "wasm",
))  # fmt: skip
_COMPONENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclasses.dataclass(frozen=True)
class PlatformSpec:
    """An image platform: ``os``, ``architecture`` and (ARM mostly) ``variant``, normalised."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    @classmethod
    def normalised(cls, os: str, architecture: str, variant: str = "") -> PlatformSpec:
        """The canonical names: ``x86_64`` is amd64, ``aarch64`` arm64, a bare ``arm`` v7."""
        architecture, variant = architecture.lower(), variant.lower()
        if architecture == "i386":
            architecture, variant = "386", ""
        elif architecture in ("x86_64", "x86-64"):
            architecture, variant = "amd64", ""
        elif architecture in ("aarch64", "arm64"):
            architecture = "arm64"
            variant = "" if variant in ("8", "v8") else variant
        elif architecture == "armhf":
            architecture, variant = "arm", "v7"
        elif architecture == "armel":
            architecture, variant = "arm", "v6"
        elif architecture == "arm":
            variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
        os = os.lower() or "linux"
        return cls("darwin" if os == "macos" else os, architecture, variant)


def parse_platform_specifier(text: str) -> PlatformSpec:
    """``os``, ``arch``, ``os/arch`` or ``os/arch/variant``, the missing part this machine's.
    Raises ``ValueError`` with containerd's words (dockerd's answer quotes them)."""
    if "*" in text:
        raise ValueError(f'"{text}": wildcards not yet supported: invalid argument')
    parts = text.split("/")
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            raise ValueError(
                f'"{part}" is an invalid component of "{text}": platform specifier component '
                'must match "^[A-Za-z0-9_-]+$": invalid argument'
            )
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS or word == "macos":
            return PlatformSpec.normalised(word, go_arch())
        spec = PlatformSpec.normalised("linux", word)
        if spec.architecture not in _KNOWN_ARCH:
            raise ValueError(
                f'"{text}": unknown operating system or architecture: invalid argument'
            )
    elif len(parts) == 2:
        spec = PlatformSpec.normalised(parts[0], parts[1])
    elif len(parts) == 3:
        return PlatformSpec.normalised(*parts)
    else:
        raise ValueError(f'"{text}": cannot parse platform specifier: invalid argument')
    # Without a variant given, arm says none (it matches as v7).
    return dataclasses.replace(spec, variant="") if spec.variant == "v7" else spec


#: The older ARM variants a newer ARM CPU runs as well.
_ARM_RUNS = {"v8": ("v8", "v7", "v6", "v5"), "v7": ("v7", "v6", "v5"), "v6": ("v6", "v5")}


def platform_runs(wanted: PlatformSpec, image: PlatformSpec) -> bool:
    """Whether an image of ``image``'s platform serves a request for ``wanted``, as dockerd
    20.10 decides: the same OS and architecture, and a variant the wanted one runs (an older
    ARM one), or none at all (image configs seldom say their variant)."""
    wanted = PlatformSpec.normalised(wanted.os, wanted.architecture, wanted.variant)
    if image.variant:
        image = PlatformSpec.normalised(image.os, image.architecture, image.variant)
        if (image.os, image.architecture) != (wanted.os, wanted.architecture):
            return False
        if wanted.architecture == "arm":
            return image.variant in _ARM_RUNS.get(wanted.variant, (wanted.variant,))
        return image.variant == wanted.variant
    image = PlatformSpec.normalised(image.os, image.architecture)
    return (image.os, image.architecture) == (wanted.os, wanted.architecture)
