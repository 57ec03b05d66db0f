"""The propagation a bind gets (:mod:`dockyard.daemon.containers.binds`) and the ``-v`` mode
grammar, without a daemon (the daemon's answers are in tests/containers/test_binds.py)."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.binds import bind_propagation
from dockyard.daemon.containers.options import parse_bind, shown_modes
from dockyard.linux.mounts import mount_holding

ROOT = "/var/lib/dockyard"


@pytest.mark.parametrize(
    "source, asked, propagation",
    [
        ("/srv", "", "rprivate"),
        ("/srv", "slave", "slave"),
        (ROOT, "", "rslave"),
        (f"{ROOT}/volumes", "", "rslave"),
        ("/var/lib", "", "rslave"),
        ("/", "rshared", "rshared"),
        # Not inside it: a name sharing its first letters (dockerd compares strings).
        (f"{ROOT}2", "", "rprivate"),
        (f"{ROOT}/../lib/x", "", "rprivate"),
    ],
)
def test_the_data_root_and_paths_above_it_are_rslave(source, asked, propagation):
    assert bind_propagation(source, asked, ROOT) == propagation


@pytest.mark.parametrize("asked", ["private", "rprivate", "shared", "slave"])
def test_only_rslave_or_rshared_may_be_asked_at_the_data_root(asked):
    with pytest.raises(InvalidParameter, match='must use either propagation mode "rslave"'):
        bind_propagation(f"{ROOT}/containers", asked, ROOT)


@pytest.mark.parametrize(
    "text, propagation",
    [("/a:/b", ""), ("/a:/b:ro,rshared", "rshared"), ("/a/../c:/b:z,slave,cached", "slave")],
)
def test_modes_name_each_kind_once(text, propagation):
    parsed = parse_bind(text)
    assert parsed.propagation == propagation and parsed.source.startswith("/")
    assert parse_bind("/a/../c:/b").source == "/c"


@pytest.mark.parametrize("mode", ["ro,rw", "shared,slave", "z,Z", "cached,delegated", "bogus"])
def test_a_kind_given_twice_or_an_unknown_word_is_an_invalid_mode(mode):
    with pytest.raises(InvalidParameter, match=f"^invalid mode: {mode}$"):
        parse_bind(f"/a:/b:{mode}")


def test_inspect_shows_the_mode_as_given():
    assert shown_modes(["/a:/b:ro,rshared", "v:/n", "v:/c:nocopy"]) == {
        "/b": "ro,rshared",
        "/c": "nocopy",
    }


def test_the_mount_holding_a_path_and_its_propagation():
    assert mount_holding("/proc/self/status")[0] == "/proc"
    point, fields = mount_holding("/")
    assert point == "/" and all(":" in field or field == "unbindable" for field in fields)
