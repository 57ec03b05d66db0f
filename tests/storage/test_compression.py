"""Decompressor choice by magic bytes, media-type checks and corrupt input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path

import pytest
import zstandard

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.images.compression import (
    Compression,
    compression_of_media_type,
    detect,
    open_decompressed,
)
from dockyard.linux.layertar import DeleteWhiteouts, extract_layer
from dockyard.testing.storage import LayerTar

PAYLOAD = LayerTar().file("hello", b"world" * 1000).dir("d").file("d/x", b"x").build()

COMPRESSORS = {
    Compression.NONE: lambda data: data,
    Compression.GZIP: gzip.compress,
    Compression.ZSTD: lambda data: zstandard.ZstdCompressor().compress(data),
    Compression.BZIP2: bz2.compress,
    Compression.XZ: lzma.compress,
}


class OneWayStream(io.RawIOBase):
    """A source that can only be read forwards, like a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("compression", list(Compression), ids=lambda c: c.value)
def test_each_format_is_detected_and_streamed(compression: Compression) -> None:
    blob = COMPRESSORS[compression](PAYLOAD)
    assert detect(blob[:8]) is compression
    assert open_decompressed(OneWayStream(blob)).read() == PAYLOAD


@pytest.mark.parametrize("compression", list(Compression), ids=lambda c: c.value)
def test_each_format_extracts_as_a_layer(compression: Compression, tmp_path: Path) -> None:
    blob = COMPRESSORS[compression](PAYLOAD)
    extract_layer(open_decompressed(OneWayStream(blob)), tmp_path, DeleteWhiteouts())
    assert (tmp_path / "hello").read_bytes() == b"world" * 1000


def test_concatenated_zstd_frames() -> None:
    half = len(PAYLOAD) // 2
    compressor = zstandard.ZstdCompressor()
    blob = compressor.compress(PAYLOAD[:half]) + compressor.compress(PAYLOAD[half:])
    assert open_decompressed(io.BytesIO(blob)).read() == PAYLOAD


def test_multi_member_gzip() -> None:
    blob = gzip.compress(PAYLOAD[:100]) + gzip.compress(PAYLOAD[100:])
    assert open_decompressed(io.BytesIO(blob)).read() == PAYLOAD


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        ("application/vnd.oci.image.layer.v1.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
    ],
)
def test_media_types(media_type: str, compression: Compression) -> None:
    assert compression_of_media_type(media_type) is compression
    blob = COMPRESSORS[compression](PAYLOAD)
    assert open_decompressed(io.BytesIO(blob), media_type).read() == PAYLOAD


def test_unknown_media_type_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="unsupported layer media type"):
        compression_of_media_type("application/x-rar")


def test_content_not_matching_the_media_type_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="should be gzip but its content is none"):
        open_decompressed(io.BytesIO(PAYLOAD), "application/vnd.oci.image.layer.v1.tar+gzip")


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD, Compression.XZ])
def test_corrupt_data_is_an_invalid_parameter(compression: Compression) -> None:
    blob = bytearray(COMPRESSORS[compression](PAYLOAD * 20))
    for index in range(20, len(blob) - 20, 7):
        blob[index] ^= 0x55
    with pytest.raises(InvalidParameter, match=f"not valid {compression.value} data"):
        open_decompressed(io.BytesIO(bytes(blob))).read()


def test_empty_input_is_an_empty_plain_stream() -> None:
    assert open_decompressed(io.BytesIO(b"")).read() == b""
