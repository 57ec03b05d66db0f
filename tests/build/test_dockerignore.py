"""``.dockerignore`` semantics, table-driven from docker's documentation and its matcher's rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.dockerignore import (
    Matcher,
    Pattern,
    PatternError,
    clean_path,
    glob_match,
    read_patterns,
)

# (.dockerignore text, path, excluded?)
DOCUMENTED = [
    # docker's reference: "*/temp*" one level down, "*/*/temp*" two, "temp?" at the root
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "somedir/temporary.txt", True),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "somedir/temp", True),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "somedir/subdir/temporary.txt", True),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "tempa", True),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "tempab", False),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "temporary.txt", False),
    ("# comment\n*/temp*\n*/*/temp*\ntemp?\n", "a/b/c/temp", False),
    ("# comment\n", "# comment", False),
    # "**" matches any number of directories, zero included
    ("**/*.go\n", "main.go", True),
    ("**/*.go\n", "cmd/tool/main.go", True),
    ("**/*.go\n", "main.gox", False),
    ("a/**/z\n", "a/z", True),
    ("a/**/z\n", "a/b/c/z", True),
    ("a/**\n", "a/b", True),
    ("a/**\n", "a", False),
    ("**\n", "anything/at/all", True),
    ("**foo\n", "barfoo", True),  # docker's suffix match
    # exceptions: the last matching pattern decides
    ("*.md\n!README.md\n", "README.md", False),
    ("*.md\n!README.md\n", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md\n", "README-secret.md", False),
    # a directory excludes what is below it; an exception re-includes a file below it
    ("build\n", "build/out/x.o", True),
    ("build\n!build/keep.txt\n", "build/keep.txt", False),
    ("build\n!build/keep.txt\n", "build/other.txt", True),
    ("*/cache\n", "a/cache/deep/file", True),
    # cleaning: leading "/", "./", "//", ".."
    ("/secret\n", "secret", True),
    ("./secret\n", "secret", True),
    ("a//b/../c\n", "a/c", True),
    ("  spaced  \n", "spaced", True),
    ("\ufeffbom\n", "bom", True),
    ("! keep\n*\n!keep\n", "keep", False),
    # Go filepath.Match syntax
    ("file?.txt\n", "file1.txt", True),
    ("file?.txt\n", "file/.txt", False),
    ("[a-c].txt\n", "b.txt", True),
    ("[a-c].txt\n", "d.txt", False),
    ("[^a-c].txt\n", "d.txt", True),
    ("[^a-c].txt\n", "a.txt", False),
    ("\\*.txt\n", "*.txt", True),
    ("\\*.txt\n", "a.txt", False),
    ("a.b\n", "axb", False),  # "." is literal
    ("a+(b)\n", "a+(b)", True),
    ("*\n", ".", False),  # the root itself is never excluded
]


@pytest.mark.parametrize(("text", "path", "excluded"), DOCUMENTED)
def test_documented_examples(text: str, path: str, excluded: bool) -> None:
    assert Matcher.from_text(text).excluded(path) is excluded


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("", "."),
        ("a//b", "a/b"),
        ("a/./b/", "a/b"),
        ("a/../..", ".."),
        ("/../a", "/a"),
        ("./", "."),
    ],
)
def test_clean_path_is_go_filepath_clean(raw: str, cleaned: str) -> None:
    assert clean_path(raw) == cleaned


def test_read_patterns_keeps_order_and_exceptions() -> None:
    patterns = read_patterns("# c\n\n/a\n!b/\n  c*  \n")
    assert [str(p) for p in patterns] == ["a", "!b", "c*"]
    assert patterns[1] == Pattern("b", exception=True)


@pytest.mark.parametrize("bad", ["!\n", "[a\n", "a[]\n", "[z-a]\n"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PatternError):
        read_patterns(bad)


@pytest.mark.parametrize(
    ("text", "directory", "walk"),
    [
        ("build\n", "build", False),
        ("build\n!build/keep.txt\n", "build", True),
        ("build\n!build/sub/keep.txt\n", "build/sub", True),
        ("build\n!build/keep.txt\n", "other", False),
        # docker compares the exception's text with the directory, so a glob does not reach in
        ("build\n!*/keep.txt\n", "build", False),
    ],
)
def test_may_include_under(text: str, directory: str, walk: bool) -> None:
    assert Matcher.from_text(text).may_include_under(directory) is walk


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)


def test_walk_yields_included_paths_parents_first(tmp_path: Path) -> None:
    _tree(tmp_path, ["Dockerfile", "a.md", "README.md", "build/x.o", "build/keep.txt", "src/m.go"])
    os.symlink("/etc", tmp_path / "link")
    matcher = Matcher.from_text("*.md\n!README.md\nbuild\n!build/keep.txt\n")
    walked = [path for path, _ in matcher.walk(str(tmp_path))]
    # "build" itself is excluded, but walked for the exception below it; the symlink is
    # listed, not followed
    assert walked == ["Dockerfile", "README.md", "build/keep.txt", "link", "src", "src/m.go"]


def test_walk_without_patterns_lists_everything(tmp_path: Path) -> None:
    _tree(tmp_path, ["a/b/c", "d"])
    assert [path for path, _ in Matcher([]).walk(str(tmp_path))] == ["a", "a/b", "a/b/c", "d"]


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "dir/a.txt", False),
        ("dir/*/c.txt", "dir/sub/c.txt", True),
        ("**/c.txt", "dir/sub/c.txt", False),  # no "**" in Go's filepath.Match
        ("[ab].txt", "b.txt", True),
        ("di?", "dir", True),
    ],
)
def test_glob_match_is_go_filepath_match(pattern: str, path: str, matched: bool) -> None:
    assert glob_match(pattern, path) is matched


def test_keeping_sends_the_build_files_anyway() -> None:
    matcher = Matcher.from_text("*\n!src\n")
    kept = matcher.keeping("Dockerfile", ".dockerignore", "src")
    assert not kept.excluded("Dockerfile")
    assert not kept.excluded(".dockerignore")
    assert kept.excluded("other")
    assert [str(p) for p in kept.patterns] == ["*", "!src", "!Dockerfile", "!.dockerignore"]
