"""HTTP authentication's wire formats: challenges built and read, Basic credentials read."""

from __future__ import annotations

import base64

import pytest

from dockyard.core.errors import InvalidCredentials
from dockyard.core.httpauth import (
    MAX_BASIC_CREDENTIALS,
    BasicCredentials,
    Challenge,
    basic_credentials,
    format_challenge,
    parse_challenges,
    quote,
)


def basic(raw: bytes) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def test_a_challenge_round_trips() -> None:
    params = {"realm": 'say "hi" \\ there', "service": "registry", "scope": "a:b:pull c:d:*"}
    value = format_challenge("Bearer", params)
    assert value == (
        'Bearer realm="say \\"hi\\" \\\\ there",service="registry",scope="a:b:pull c:d:*"'
    )
    assert parse_challenges(value) == [Challenge("Bearer", params)]
    assert format_challenge("Negotiate", {}) == "Negotiate"


@pytest.mark.parametrize("value", ["line\nbreak", "nul\x00", "del\x7f", "caf\xe9"])
def test_what_no_header_may_hold_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        quote(value)
    with pytest.raises(ValueError):
        format_challenge("Basic", {"realm": value})
    with pytest.raises(ValueError):
        format_challenge("Basic", {"re alm": "x"})


def test_several_challenges_tokens_and_unquoted_values() -> None:
    value = 'Basic realm="a" , Bearer realm="b",error=invalid_token, Negotiate abc==,'
    assert parse_challenges(value) == [
        Challenge("Basic", {"realm": "a"}),
        Challenge("Bearer", {"realm": "b", "error": "invalid_token"}),
        Challenge("Negotiate", {}, "abc=="),
    ]
    # Parameter names are case-insensitive: read in lower case.
    assert parse_challenges('Basic Realm="x"') == [Challenge("Basic", {"realm": "x"})]


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "no challenge"),
        ('realm="x"', "unexpected"),
        ('Basic realm="x', "quoted-string"),
        ('Basic realm="x" junk', "unexpected 'junk'"),
        ('Basic realm="x", realm="y"', "names 'realm' twice"),
        ("Basic realm=@", "a value for 'realm'"),
    ],
)
def test_malformed_challenges_are_named(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_challenges(value)


def test_basic_credentials_are_read() -> None:
    found = basic_credentials(basic("älice:pass:with:colons".encode()))
    assert found == BasicCredentials("älice", "pass:with:colons")
    assert "with:colons" not in repr(found)
    assert basic_credentials({"authorization": "basic   " + base64.b64encode(b"a:").decode()}) == (
        BasicCredentials("a", "")
    )


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer abc"}, {"cookie": "x"}])
def test_no_basic_credentials(headers: dict[str, str]) -> None:
    assert basic_credentials(headers) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Basic !!!", "not base64"),
        ("Basic YWJj", "no ':'"),  # "abc"
        ("Basic \xe9\xe9\xe9\xe9", "not base64"),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), "not UTF-8"),
        ("Basic " + "A" * (MAX_BASIC_CREDENTIALS + 4), "longer than"),
        ("Basic", "no ':'"),
    ],
)
def test_unreadable_basic_credentials_are_invalid(value: str, reason: str) -> None:
    with pytest.raises(InvalidCredentials, match=reason) as refused:
        basic_credentials({"authorization": value})
    assert refused.value.subject == ""
