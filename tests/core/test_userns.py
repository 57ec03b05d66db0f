"""``userns-remap``: parsing the setting and the subordinate id files, resolving the maps.

The files are temporary copies in the formats of /etc/subuid and /etc/subgid; the users and
groups are ones every Debian system has (``daemon``, uid and gid 1). Only the ``default`` test
touches the system: it creates the ``dockremap`` user if missing (as the daemon would) and
deletes it again when it made it.
"""

from __future__ import annotations

import contextlib
import grp
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core.errors import ConfigError
from dockyard.core.interfaces import IdMapping
from dockyard.daemon.userns import (
    DEFAULT_USER,
    RemapSetting,
    SubordinateRange,
    first_free_start,
    id_mappings,
    parse_setting,
    parse_subordinate_ids,
    resolve,
)


@pytest.fixture
def files(tmp_path):
    """Write (subuid, subgid) texts; returns their paths."""

    def write(subuid: str, subgid: str) -> tuple[str, str]:
        (tmp_path / "subuid").write_text(subuid)
        (tmp_path / "subgid").write_text(subgid)
        return str(tmp_path / "subuid"), str(tmp_path / "subgid")

    return write


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("  ", None),
        ("default", RemapSetting("dockremap")),
        ("daemon", RemapSetting("daemon")),
        ("daemon:bin", RemapSetting("daemon", "bin")),
        ("1:2", RemapSetting("1", "2")),
    ],
)
def test_settings(value, expected):
    assert parse_setting(value) == expected


@pytest.mark.parametrize("value", [":daemon", "daemon:", "a:b:c"])
def test_malformed_settings_are_one_line_errors(value):
    with pytest.raises(ConfigError, match=r"^userns-remap: invalid value .*USER\[:GROUP\]"):
        parse_setting(value)


def test_subordinate_files_skip_comments_and_blank_lines():
    text = "# ranges\n\ndaemon:100000:65536\n  1:300000:10  \n"
    assert parse_subordinate_ids(text, "subuid") == [
        SubordinateRange("daemon", 100000, 65536),
        SubordinateRange("1", 300000, 10),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("daemon:100000", "subuid:2: malformed line 'daemon:100000': expected OWNER:START:COUNT"),
        ("daemon:x:65536", "subuid:2: malformed line"),
        (":1:2", "subuid:2: malformed line"),
        ("daemon:1:0", "subuid:2: the range 1:0 is not within 0..4294967295"),
        ("daemon:-5:10", "subuid:2: the range -5:10 is not within"),
        ("daemon:4294967295:2", "subuid:2: the range 4294967295:2 is not within"),
    ],
)
def test_malformed_subordinate_lines_name_file_and_line(line, message):
    with pytest.raises(ConfigError) as raised:
        parse_subordinate_ids(f"root:100000:65536\n{line}\n", "subuid")
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_several_ranges_make_one_contiguous_map_in_host_order():
    ranges = [SubordinateRange("u", 500000, 10), SubordinateRange("u", 100000, 65536)]
    assert id_mappings(ranges) == (IdMapping(0, 100000, 65536), IdMapping(65536, 500000, 10))


@pytest.mark.parametrize(
    ("taken", "start"),
    [
        ([], 100000),
        ([(100000, 65536)], 165536),
        ([(0, 1000), (200000, 10)], 100000),  # fits below the next one
        ([(150000, 10)], 150010),  # 100000 + 65536 would reach into it
        ([(165536, 65536), (100000, 65536)], 231072),  # in any order
        ([(90000, 20000), (110000, 100)], 110100),
    ],
)
def test_first_free_range(taken, start):
    ranges = [SubordinateRange("x", s, c) for s, c in taken]
    assert first_free_start(ranges) == start


def test_resolve_by_names(files):
    subuid, subgid = files("root:1:1\ndaemon:100000:65536\n", "daemon:200000:65536\n")
    remapping = resolve("daemon", subuid, subgid)
    assert remapping is not None
    assert (remapping.user, remapping.group) == ("daemon", "daemon")
    assert remapping.uid_mappings == (IdMapping(0, 100000, 65536),)
    assert remapping.gid_mappings == (IdMapping(0, 200000, 65536),)
    assert (remapping.root_uid, remapping.root_gid) == (100000, 200000)


def test_resolve_by_ids_matches_entries_by_name_or_id(files):
    # "1:2" is daemon:bin; the files may name them either way.
    subuid, subgid = files("1:100000:65536\n", "bin:300000:1000\n")
    remapping = resolve("1:2", subuid, subgid)
    assert remapping is not None
    assert (remapping.user, remapping.group) == ("daemon", "bin")
    assert remapping.gid_mappings == (IdMapping(0, 300000, 1000),)


def test_off_is_none(files):
    assert resolve("", *files("", "")) is None


@pytest.mark.parametrize(
    ("value", "subuid", "subgid", "message"),
    [
        ("nosuchuser", "", "", "userns-remap: user 'nosuchuser' does not exist (no passwd entry)"),
        ("999999", "", "", "userns-remap: user '999999' does not exist"),
        ("daemon:nosuchgroup", "", "", "userns-remap: group 'nosuchgroup' does not exist"),
        (
            "daemon",
            "bin:100000:65536\n",
            "daemon:100000:65536\n",
            "userns-remap: no subordinate uid range for user 'daemon' in {subuid}",
        ),
        (
            "daemon",
            "daemon:100000:65536\n",
            "",
            "userns-remap: no subordinate gid range for group 'daemon' in {subgid}",
        ),
        (
            "daemon",
            "daemon:0:65536\n",
            "daemon:100000:65536\n",
            "userns-remap: {subuid} gives user 'daemon' a range holding host uid 0 (root)",
        ),
        ("daemon", "daemon:1", "", "{subuid}:1: malformed line 'daemon:1'"),
    ],
)
def test_resolve_errors_are_one_line(files, value, subuid, subgid, message):
    paths = files(subuid, subgid)
    with pytest.raises(ConfigError) as raised:
        resolve(value, *paths)
    text = str(raised.value)
    assert text.startswith(message.format(subuid=paths[0], subgid=paths[1])), text
    assert "\n" not in text


def test_missing_files_have_no_ranges(tmp_path):
    with pytest.raises(ConfigError, match="no subordinate uid range for user 'daemon'"):
        resolve("daemon", str(tmp_path / "none"), str(tmp_path / "none"))


@contextlib.contextmanager
def restoring_dockremap() -> Iterator[None]:
    """Leave the ``dockremap`` user as found: deleted again if it did not exist before."""
    try:
        pwd.getpwnam(DEFAULT_USER)
        existed = True
    except KeyError:
        existed = False
    try:
        yield
    finally:
        if not existed:
            subprocess.run(["userdel", DEFAULT_USER], capture_output=True, check=False)
            with contextlib.suppress(KeyError):
                grp.getgrnam(DEFAULT_USER)
                subprocess.run(["groupdel", DEFAULT_USER], capture_output=True, check=False)


@pytest.fixture
def dockremap() -> Iterator[None]:
    with restoring_dockremap():
        yield


def test_default_makes_dockremap_and_its_ranges_once(dockremap, files):
    subuid, subgid = files("other:100000:65536", "other:100000:70000\n")
    remapping = resolve("default", subuid, subgid)
    assert remapping is not None
    assert (remapping.user, remapping.group) == ("dockremap", "dockremap")
    # The first free place from 100000, in each file; a missing final newline is mended.
    assert Path(subuid).read_text() == "other:100000:65536\ndockremap:165536:65536\n"
    assert Path(subgid).read_text() == "other:100000:70000\ndockremap:170000:65536\n"
    assert remapping.uid_mappings == (IdMapping(0, 165536, 65536),)
    assert remapping.gid_mappings == (IdMapping(0, 170000, 65536),)
    assert resolve("default", subuid, subgid) == remapping  # nothing added the second time
    assert Path(subuid).read_text().count("dockremap") == 1
