"""The Engine API's container options, parsed as dockerd parses them."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.options import (
    ResolvedUser,
    SecurityOptions,
    parse_security_options,
    parse_user,
)

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000::/home/app:/bin/sh
# a comment
daemon:x:2:2::/:/bin/false
"""
GROUP = """root:x:0:
wheel:x:10:root,app
app:x:1000:
audio:x:29:app
"""


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        # No user is root, with root's memberships; the primary group always comes first.
        ("", ResolvedUser(0, 0, (0, 10), "/root")),
        ("root", ResolvedUser(0, 0, (0, 10), "/root")),
        ("app", ResolvedUser(1000, 1000, (1000, 10, 29), "/home/app")),
        ("1000", ResolvedUser(1000, 1000, (1000, 10, 29), "/home/app")),
        # A uid the image does not know: group 0 and home /, as docker gives them.
        ("4242", ResolvedUser(4242, 0, (0,), "/")),
        # An explicit group replaces the memberships.
        ("app:audio", ResolvedUser(1000, 29, (29,), "/home/app")),
        ("app:7", ResolvedUser(1000, 7, (7,), "/home/app")),
        ("4242:4343", ResolvedUser(4242, 4343, (4343,), "/")),
    ],
)
def test_user_resolves_like_docker(user, expected):
    assert parse_user(user, PASSWD, GROUP) == expected


def test_user_without_image_files_is_numeric_only():
    assert parse_user("1000:1000", None, None) == ResolvedUser(1000, 1000, (1000,), "/")
    with pytest.raises(InvalidParameter, match="unable to find user app: no matching entries"):
        parse_user("app", None, None)


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nobody-here", "unable to find user nobody-here: no matching entries in passwd file"),
        ("app:nogroup", "unable to find group nogroup: no matching entries in group file"),
    ],
)
def test_unknown_names_are_docker_errors(user, message):
    with pytest.raises(InvalidParameter, match=message):
        parse_user(user, PASSWD, GROUP)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (None, SecurityOptions()),
        (["no-new-privileges"], SecurityOptions(no_new_privileges=True)),
        (["no-new-privileges:true"], SecurityOptions(no_new_privileges=True)),
        (["no-new-privileges=false"], SecurityOptions()),
        (["no-new-privileges", "no-new-privileges=false"], SecurityOptions()),
        (["systempaths=unconfined"], SecurityOptions(unconfined_system_paths=True)),
        (["seccomp=unconfined", "apparmor=unconfined"], SecurityOptions(unconfined_seccomp=True)),
        (["seccomp:unconfined"], SecurityOptions(unconfined_seccomp=True)),
        (["label=disable", "label:type:svirt_lxc_net_t"], SecurityOptions()),
    ],
)
def test_security_options_as_dockerd_reads_them(entries, expected):
    assert parse_security_options(entries) == expected
