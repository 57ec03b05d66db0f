"""tmpfs mounts (``--tmpfs PATH[:OPTIONS]`` and ``--mount type=tmpfs``) as dockerd makes them.

Both forms become one list of option words for the runtime: dockerd's defaults ``noexec``,
``nosuid`` and ``nodev`` first, then what the user asked for, merged so the last word of a
pair wins (``exec`` after the default ``noexec`` leaves the mount executable) and the last
value of a data key wins (``size=1m,size=2m`` is 2m). Flags are given only in their "on"
spelling (``exec`` removes ``noexec`` rather than being passed on), so a runtime can read
the words with :func:`dockyard.linux.mounts.parse_mount_options`.

Values the kernel would refuse at start (``size=abc``) are refused at create with a 400, where
dockerd lets the start fail; propagation words are refused, as nothing here applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import TmpfsMount
from dockyard.daemon.containers.config import MountConfig

DEFAULT_WORDS = ("noexec", "nosuid", "nodev")

#: Each flag word: the "on" word it sets or clears, and whether it sets it.
_FLAGS: dict[str, tuple[str, bool]] = {
    "ro": ("ro", True), "rw": ("ro", False),
    "nosuid": ("nosuid", True), "suid": ("nosuid", False),
    "nodev": ("nodev", True), "dev": ("nodev", False),
    "noexec": ("noexec", True), "exec": ("noexec", False),
    "sync": ("sync", True), "async": ("sync", False),
    "dirsync": ("dirsync", True),
    "noatime": ("noatime", True), "atime": ("noatime", False),
    "nodiratime": ("nodiratime", True), "diratime": ("nodiratime", False),
    "relatime": ("relatime", True), "norelatime": ("relatime", False),
    "strictatime": ("strictatime", True), "nostrictatime": ("strictatime", False),
}  # fmt: skip

#: Propagation is the mount namespace's business: private, as every mount in a container is.
_PROPAGATION = ("private", "rprivate")

_SIZE = re.compile(r"\d+[kKmMgGtTpPeE%]?")
_DATA_VALUES: dict[str, re.Pattern[str]] = {
    "size": _SIZE,
    "nr_blocks": _SIZE,
    "nr_inodes": _SIZE,
    "mode": re.compile(r"[0-7]{1,4}"),
    "uid": re.compile(r"\d+"),
    "gid": re.compile(r"\d+"),
    "mpol": re.compile(r"(default|prefer|bind|interleave|local)(:[\d,-]+)?(=\w+)?"),
}


def merge_options(words: Iterable[str], field: str) -> tuple[str, ...]:
    """dockerd's defaults and ``words``, merged; an unknown word is refused naming ``field``."""
    flags: dict[str, bool] = {}
    data: dict[str, str] = {}
    for word in (*DEFAULT_WORDS, *words):
        if not word or word == "defaults" or word in _PROPAGATION:
            continue
        if word in _FLAGS:
            name, on = _FLAGS[word]
            flags[name] = on
            continue
        key, separator, value = word.partition("=")
        if not separator or key not in _DATA_VALUES:
            raise InvalidParameter(f"{field}: invalid tmpfs option {word!r}")
        if not _DATA_VALUES[key].fullmatch(value):
            raise InvalidParameter(f"{field}: invalid value for tmpfs option {key}: {value!r}")
        data.pop(key, None)  # the last one given wins, in its place
        data[key] = value
    return (*(name for name, on in flags.items() if on), *(f"{k}={v}" for k, v in data.items()))


def check_destination(path: str, field: str) -> str:
    if not path.startswith("/"):
        raise InvalidParameter(f"{field}: invalid mount path: '{path}' mount path must be absolute")
    if path.rstrip("/") == "":
        raise InvalidParameter(f"{field}: invalid specification: destination can't be '/'")
    return path


def from_host_config(tmpfs: dict[str, str] | None) -> list[TmpfsMount]:
    """``HostConfig.Tmpfs``: container path to its options (``size=64m,mode=1777``)."""
    found = []
    for path, text in (tmpfs or {}).items():
        field = f"HostConfig.Tmpfs[{path!r}]"
        check_destination(path, field)
        found.append(TmpfsMount(path, merge_options(text.split(","), field)))
    return found


def from_mount(mount: MountConfig, index: int) -> TmpfsMount:
    """A ``HostConfig.Mounts`` entry of type tmpfs (``TmpfsOptions``: size in bytes, mode)."""
    field = f"HostConfig.Mounts[{index}]"
    if mount.source:
        raise InvalidParameter(
            f'{field}: invalid mount config for type "tmpfs": field Source must not be specified'
        )
    if mount.bind_options is not None or mount.volume_options is not None:
        raise InvalidParameter(
            f'{field}: invalid mount config for type "tmpfs": only TmpfsOptions apply'
        )
    check_destination(mount.target, field)
    words = ["ro"] if mount.read_only else []
    options = mount.tmpfs_options
    if options is not None:
        if options.size_bytes < 0:
            raise InvalidParameter(f"{field}: invalid tmpfs size {options.size_bytes}")
        if options.size_bytes:
            words.append(f"size={_in_kibibytes(options.size_bytes)}")
        if options.mode:
            if int(options.mode) > 0o7777:
                raise InvalidParameter(f"{field}: invalid tmpfs mode {int(options.mode):o}")
            words.append(f"mode={int(options.mode):o}")
    return TmpfsMount(mount.target, merge_options(words, field))


def _in_kibibytes(size: int) -> str:
    """tmpfs rounds a size up to whole pages; whole kibibytes say so without surprise."""
    return f"{-(-size // 1024)}k"
