"""docker's detach-key syntax and its escape scanning, as dockerd reads them."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.detach import (
    ATTACH_REFUSAL,
    DEFAULT_DETACH_KEYS,
    DetachScanner,
    detach_keys,
    key_codes,
)


@pytest.mark.parametrize(
    ("spec", "codes"),
    [("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-@", b"\x00"), ("ctrl-\\", b"\x1c"), ("DEL", b"\x7f"),
     ("a,b", b"ab")],
)  # fmt: skip
def test_key_names(spec, codes):
    assert key_codes(spec) == codes


@pytest.mark.parametrize("spec", ["ctrl-P", "ctrl-", "ab", "ctrl-a,,b", " a", "é", ","])
def test_bad_specs_are_refused_with_dockerds_words(spec):
    assert key_codes(spec) is None
    with pytest.raises(InvalidParameter, match=r"Invalid detach keys \(.*\) provided"):
        detach_keys(spec, ATTACH_REFUSAL)


def test_empty_means_the_default():
    assert detach_keys("", ATTACH_REFUSAL) == DEFAULT_DETACH_KEYS


def test_scanner_holds_a_begun_sequence_and_passes_a_broken_one_on():
    scanner = DetachScanner(b"abc")
    assert scanner.feed(b"xab") == b"x"  # "ab" may begin the sequence
    assert scanner.feed(b"x") == b"abx"
    # The byte that breaks a sequence off does not begin a new one (dockerd's proxy).
    assert scanner.feed(b"aabc") == b"aabc"
    assert not scanner.detached
    assert scanner.feed(b"-abc-rest") == b"-"
    assert scanner.detached
