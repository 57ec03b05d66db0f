"""Streaming decompression of layer blobs, chosen by their magic bytes.

Layers arrive as plain tars or compressed with gzip (the docker default), zstd (OCI
``+zstd``), and from ``docker import`` also bzip2 or xz. :func:`open_decompressed` peeks at the
first bytes, picks the decoder and returns a file object yielding the tar, reading the source
front to back once. Corrupt input surfaces as :class:`~dockyard.core.errors.InvalidParameter`
while reading, so callers need no knowledge of each codec's exception types.
"""

from __future__ import annotations

import bz2
import enum
import io
import lzma
import zlib
from typing import Any, BinaryIO, cast

import zstandard
from zlib_ng import gzip_ng, zlib_ng

from dockyard.core import mediatypes
from dockyard.core.errors import InvalidParameter


class Compression(enum.Enum):
    """A compression format a layer may use."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)
_MAGIC_LENGTH = max(len(magic) for magic, _ in _MAGIC)

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    zlib.error,
    # zlib-ng's stubs call its error an instance; it is the class of what it raises.
    cast("type[BaseException]", zlib_ng.error),
    lzma.LZMAError,
    zstandard.ZstdError,
    ValueError,
)


def detect(head: bytes) -> Compression:
    """The compression whose magic number starts ``head``; :attr:`Compression.NONE` otherwise."""
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    return Compression.NONE


def compression_of_media_type(media_type: str) -> Compression:
    """The compression a layer media type promises; unknown types raise ``InvalidParameter``."""
    try:
        return Compression(mediatypes.LAYER_COMPRESSION[media_type])
    except KeyError:
        known = ", ".join(sorted(mediatypes.LAYER_COMPRESSION))
        raise InvalidParameter(
            f"unsupported layer media type {media_type!r}; supported: {known}"
        ) from None


def open_decompressed(source: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """A readable stream of ``source`` decompressed by the codec its first bytes name.

    With ``media_type``, a blob whose bytes are of another compression than the type promises
    is refused (an uncompressed ``+gzip`` layer, say), as the OCI spec requires. Decoding errors
    met later while reading are raised as :class:`~dockyard.core.errors.InvalidParameter`.
    """
    head = read_exactly_up_to(source, _MAGIC_LENGTH)
    found = detect(head)
    if media_type is not None:
        promised = compression_of_media_type(media_type)
        if promised is not found:
            raise InvalidParameter(
                f"layer of media type {media_type!r} should be {promised.value} "
                f"but its content is {found.value}"
            )
    raw = io.BufferedReader(PrefixedReader(head, source), buffer_size=1 << 16)
    if found is Compression.NONE:
        return raw
    # The decoders are closed through the returned reader, hence no context managers.
    decoded: Any
    if found is Compression.GZIP:
        # zlib-ng inflates about twice as fast as the standard library's zlib.
        decoded = gzip_ng.GzipNGFile(fileobj=raw, mode="rb")
    elif found is Compression.ZSTD:
        # Concatenated frames are legal zstd (pigz-style parallel writers produce them).
        decoded = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    elif found is Compression.BZIP2:
        decoded = bz2.BZ2File(raw, mode="rb")
    else:
        decoded = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115
    reader = _ErrorTranslatingReader(decoded, found)
    return io.BufferedReader(reader, buffer_size=1 << 16)


def read_exactly_up_to(source: BinaryIO, count: int) -> bytes:
    head = b""
    while len(head) < count:
        chunk = source.read(count - len(head))
        if not chunk:
            break
        head += chunk
    return head


class PrefixedReader(io.RawIOBase):
    """The bytes already peeked at, then the rest of the source."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        self._prefix = prefix
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._prefix:
            count = min(len(self._prefix), len(view))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


class _ErrorTranslatingReader(io.RawIOBase):
    """Turns a codec's own exceptions into ``InvalidParameter`` naming the format."""

    def __init__(self, decoded: Any, compression: Compression) -> None:
        self._decoded = decoded
        self._compression = compression

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        try:
            data = self._decoded.read(len(view))
        except _DECODE_ERRORS as exc:
            raise InvalidParameter(
                f"layer is not valid {self._compression.value} data: {exc}"
            ) from None
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._decoded.close()
        super().close()
