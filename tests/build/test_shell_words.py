"""Dockerfile word expansion: each rule against what dockerd 20.10 made of the same word
(the ENV values of an image it built, and its error texts)."""

from __future__ import annotations

import pytest

from dockyard.daemon.build.shell_words import ExpansionError, expand, split_words

VARIABLES = {"X": "x1", "Y": "a b", "E": ""}


@pytest.mark.parametrize(
    ("word", "expanded"),
    [
        # Seen from dockerd: ENV a=$1x b=$@x c=$Xb d=${X:+alt}${Y:-no} e=\$X f='$X' ...
        ("$1x", "x"),
        ("$@x", "x"),
        ("$Xb", ""),
        ("${X:+alt}${Y:-no}", "alta b"),
        ("\\$X", "$X"),
        ("'$X'", "$X"),
        ('"$X\\$\\n"', "x1$\\n"),
        ("$", "$"),
        ("${X}_", "x1_"),
        ("a\\ b", "a b"),
        # the rest of the operators
        ("${N:-d}", "d"),
        ("${E:-d}", "d"),
        ("${X:-d}", "x1"),
        ("${E:+s}", ""),
        ("${N-d}", "d"),
        ("${E-d}", ""),
        ("${E+s}", "s"),
        ("${N+s}", ""),
        ("${X?oops}", "x1"),
        ("${X:?oops}", "x1"),
        ("${N:-$X}", "x1"),
        ("${N:-${Y:+in}}", "in"),
        ("${N:-a b}", "a b"),
        # quotes: double quotes expand, single do not, both are removed
        ('"a  b"', "a  b"),
        ("\"'x'\"", "'x'"),
        ("'\"x\"'", '"x"'),
        ('"a\\"b"', 'a"b'),
        ('"a\\b"', "a\\b"),
        ('"\\\\"', "\\"),
        ("\\", ""),
        ("abc\\", "abc"),
        ("$$", ""),
        ("$0$#", ""),
        ("${1}", ""),
        ("pre${X}post", "prex1post"),
        ("$X$X", "x1x1"),
        ("€$X€", "€x1€"),
    ],
)
def test_expand(word: str, expanded: str) -> None:
    assert expand(word, VARIABLES) == expanded


@pytest.mark.parametrize(
    ("word", "message"),
    [
        # dockerd's words, captured with ENV a=<word>
        ("${X", "failed to process \"${X\": missing ':' in substitution"),
        ("${N?e}", 'failed to process "${N?e}": N: e'),
        ("${N:?e}", 'failed to process "${N:?e}": N: e'),
        ("${E:?e}", 'failed to process "${E:?e}": E: e'),
        ("${}", 'failed to process "${}": syntax error: bad substitution'),
        ("${:}", 'failed to process "${:}": syntax error: bad substitution'),
        ("${X:=d}", 'failed to process "${X:=d}": unsupported modifier (=) in substitution'),
        ("${X:-a", "failed to process \"${X:-a\": syntax error: missing '}'"),
        ("${X:", "failed to process \"${X:\": syntax error: missing '}'"),
        ("${", "failed to process \"${\": syntax error: missing '}'"),
        (
            '"ab',
            'failed to process "\\"ab": unexpected end of statement while looking for '
            "matching double-quote",
        ),
        (
            "'ab",
            'failed to process "\'ab": unexpected end of statement while looking for '
            "matching single-quote",
        ),
        ("${N?}", 'failed to process "${N?}": N: is not allowed to be unset'),
        ("${E:?}", 'failed to process "${E:?}": E: is not allowed to be unset or empty'),
    ],
)
def test_expand_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError) as caught:
        expand(word, VARIABLES)
    assert str(caught.value) == message
    assert caught.value.status_code == 400


def test_backtick_escape() -> None:
    assert expand("a`$X", VARIABLES, "`") == "a$X"
    assert expand("C:\\dir\\$X", VARIABLES, "`") == "C:\\dir\\x1"
    assert expand('"`""', VARIABLES, "`") == '"'
    with pytest.raises(ValueError):
        expand("x", VARIABLES, "!")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ("a $Y c", ["a", "a", "b", "c"]),  # an unquoted value is split
        ('a "$Y" c', ["a", "a b", "c"]),  # a quoted one is not
        ('""', [""]),  # quotes make a word, even an empty one
        ("$E", []),  # an empty unquoted expansion makes none
        ("x$E y", ["x", "y"]),
        ("c\\ d", ["c d"]),
        ("  ", []),
        ("'a b'c", ["a bc"]),
    ],
)
def test_split_words(text: str, words: list[str]) -> None:
    assert split_words(text, VARIABLES) == words


def test_hostile_words_do_not_blow_up() -> None:
    long_word = "$X" * 50_000
    assert expand(long_word, VARIABLES) == "x1" * 50_000
    nested = "${N:-" * 50 + "end" + "}" * 50
    assert expand(nested, VARIABLES) == "end"
    with pytest.raises(ExpansionError):
        expand("${N:-" * 200, VARIABLES)
    assert expand("a\x00b", VARIABLES) == "a\x00b"  # the parser refuses NULs, not the lexer


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = "${N:-" * 5000 + "end" + "}" * 5000
    with pytest.raises(ExpansionError, match="nested more than 64 deep"):
        expand(deep, VARIABLES)
