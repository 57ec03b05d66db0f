"""The Dockerfile grammar: lines, directives, instructions, stages and docker's errors.

The expected texts are dockerd 20.10's (captured with POST /build; the interop test
re-checks a sample side by side)."""

from __future__ import annotations

import pytest

from dockyard.daemon.build.arguments import json_array, parse_words
from dockyard.daemon.build.dockerfile import (
    MAX_LINE_BYTES,
    Dockerfile,
    DockerfileError,
    Instruction,
    decode,
    parse,
)


def only(text: str) -> Instruction:
    """The one instruction after ``FROM scratch`` in ``text``."""
    dockerfile = parse("FROM scratch\n" + text)
    (instruction,) = dockerfile.stages[0].instructions
    return instruction


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------


def test_an_instruction_records_what_docker_prints_and_where_it_is() -> None:
    dockerfile = parse("# hello\n\nfrom   busybox  \n  run echo hi   \t\n")
    stage = dockerfile.stages[0]
    assert stage.from_instruction == Instruction(
        keyword="FROM",
        original="from   busybox",
        line=3,
        end_line=3,
        flags=(),
        value="busybox",
        arguments=("busybox",),
    )
    (run,) = stage.instructions
    assert (run.keyword, run.original, run.line, run.value) == ("RUN", "run echo hi", 4, "echo hi")
    assert run.exec_form is None


def test_continuations_join_pieces_as_they_are_and_skip_comments_and_blank_lines() -> None:
    # dockerd printed "Step 2/3 : ENV a=b    c=d  e=f" for this, and the warning
    dockerfile = parse("FROM scratch\nENV a=b \\\n   c=d\\\n# comment\n\n  e=f\nLABEL x=y\n")
    env, label = dockerfile.stages[0].instructions
    assert env.original == "ENV a=b    c=d  e=f"
    assert (env.line, env.end_line) == (2, 6)
    assert env.arguments == ("a", "b", "c", "d", "e", "f")
    assert label.line == 7
    assert dockerfile.warnings == ("Empty continuation line found in:\n    ENV a=b    c=d  e=f",)
    assert dockerfile.warning_text() == (
        "[WARNING]: Empty continuation line found in:\n    ENV a=b    c=d  e=f\n"
        "[WARNING]: Empty continuation lines will become errors in a future release.\n"
    )
    assert parse("FROM scratch\n").warning_text() == ""


@pytest.mark.parametrize(
    ("text", "original"),
    [
        ("RUN a \\  \t\n  b", "RUN a   b"),  # blanks after the escape are allowed
        ("RUN a\\\\\n", "RUN a\\\\"),  # an escaped escape is not a continuation
        ("RUN a \\", "RUN a"),  # a continuation at the end of the file
        ("RUN a \\\n# c1\n  # c2\nb", "RUN a b"),
        ("RUN a \\\r\n b\r\n", "RUN a  b"),  # CRLF endings
        ("RUN a \\\n\\\nb", "RUN a b"),  # a line holding only the escape
    ],
)
def test_continuation_forms(text: str, original: str) -> None:
    assert only(text).original == original


def test_a_deep_continuation_is_one_instruction() -> None:
    text = "FROM scratch\nRUN a \\\n" + "b \\\n" * 20_000 + "c\n"
    (run,) = parse(text).stages[0].instructions
    assert run.original.startswith("RUN a b b")
    assert run.end_line == 20_003


def test_a_byte_order_mark_is_dropped() -> None:
    assert parse("\ufeffFROM scratch\n").stages[0].from_instruction.keyword == "FROM"


def test_keywords_are_case_insensitive() -> None:
    instruction = only("hEaLtHcHeCk NONE\n")
    assert instruction.keyword == "HEALTHCHECK"
    assert instruction.original == "hEaLtHcHeCk NONE"


# --------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------


def test_escape_directive_changes_the_continuation_and_escape_character() -> None:
    dockerfile = parse("# escape=`\nFROM scratch\nENV a=b `\n c=d\nRUN dir c:\\\n")
    assert dockerfile.escape == "`"
    env, run = dockerfile.stages[0].instructions
    assert env.original == "ENV a=b  c=d"
    assert run.original == "RUN dir c:\\"


@pytest.mark.parametrize(
    "text",
    [
        "#escape = ` \nFROM scratch\nENV a=b `\n c=d\n",  # blanks around the = are fine
        "# syntax=docker/dockerfile:1\n# ESCAPE=`\nFROM scratch\nENV a=b `\n c=d\n",
        "# escape=`\n\n  # escape=\\\nFROM scratch\nENV a=b `\n c=d\n",  # later one: a comment
    ],
)
def test_directive_forms(text: str) -> None:
    assert parse(text).escape == "`"


@pytest.mark.parametrize(
    "text",
    [
        "# foo=bar\n# escape=`\nFROM scratch\n",  # an unknown directive ends the directives
        "\n# escape=`\nFROM scratch\n",  # so does a blank line
        "# comment\n# escape=`\nFROM scratch\n",
        "FROM scratch\n# escape=`\n",
    ],
)
def test_directives_only_at_the_very_top(text: str) -> None:
    assert parse(text).escape == "\\"


def test_syntax_is_recorded_and_otherwise_ignored() -> None:
    dockerfile = parse("# syntax=docker/dockerfile:1.4\nFROM scratch\n")
    assert dockerfile.syntax == "docker/dockerfile:1.4"
    assert parse("FROM scratch\n").syntax is None


# --------------------------------------------------------------------------------------------
# Flags, arguments, exec form
# --------------------------------------------------------------------------------------------


def test_flags_are_parsed_and_the_value_follows_them() -> None:
    copy = only('COPY --from=build --chown="1:2" --chmod=0755 a b /dst/\n')
    assert copy.flags == (("from", "build"), ("chown", "1:2"), ("chmod", "0755"))
    assert copy.flag("chown") == "1:2"
    assert copy.flag("nope") is None
    assert copy.value == "a b /dst/"
    assert copy.arguments == ("a", "b", "/dst/")
    add = only("ADD -- --notaflag /d\n")  # a bare -- ends the flags
    assert add.flags == ()
    assert add.arguments == ("--notaflag", "/d")
    health = only("HEALTHCHECK --interval=5s --timeout=1m --start-period=1s --retries=3 CMD x\n")
    assert dict(health.flags) == {
        "interval": "5s",
        "timeout": "1m",
        "start-period": "1s",
        "retries": "3",
    }
    assert parse("FROM --platform=linux/amd64 x\n").stages[0].from_instruction.flags == (
        ("platform", "linux/amd64"),
    )


@pytest.mark.parametrize(
    ("text", "exec_form", "arguments"),
    [
        ('CMD ["a", "b c"]', ("a", "b c"), ("a", "b c")),
        ("CMD a b  c", None, ("a b  c",)),
        ('RUN ["x"]', ("x",), ("x",)),
        ("RUN [not json", None, ("[not json",)),
        ('ENTRYPOINT ["a"] trailing', ("a",), ("a",)),  # Go's decoder stops after the array
        ("ENTRYPOINT []", (), ()),
        ('SHELL ["/bin/bash", "-c"]', ("/bin/bash", "-c"), ("/bin/bash", "-c")),
        ('COPY ["a b", "/c"]', ("a b", "/c"), ("a b", "/c")),
        ('COPY "a b" c', None, ('"a', 'b"', "c")),  # shell-form COPY splits on blanks only
        ('VOLUME ["/a", "/b"]', ("/a", "/b"), ("/a", "/b")),
        ("VOLUME /a /b", None, ("/a", "/b")),
        ("HEALTHCHECK CMD curl -f x", None, ("CMD", "curl -f x")),
        ('HEALTHCHECK CMD ["curl", "x"]', ("curl", "x"), ("CMD", "curl", "x")),
        ("WORKDIR /a b", None, ("/a b",)),  # the whole rest of the line
        ("EXPOSE 80  443/udp", None, ("80", "443/udp")),
        ("ONBUILD RUN echo hi", None, ("RUN", "echo hi")),
        ('ONBUILD CMD ["x"]', ("x",), ("CMD", "x")),
        ("CMD [NaN]", None, ("[NaN]",)),  # not JSON for Go: the shell form
        ('CMD {"a": 1}', None, ('{"a": 1}',)),
    ],
)
def test_argument_forms(text: str, exec_form: tuple[str, ...] | None, arguments: tuple) -> None:
    instruction = only(text + "\n")
    assert instruction.exec_form == exec_form
    assert instruction.arguments == arguments


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        ("ENV a=b", ("a", "b")),
        ('ENV a="b c" d=e', ("a", '"b c"', "d", "e")),  # quotes go at expansion
        ("ENV a b c", ("a", "b c")),  # the legacy form: the rest is the value
        ('ENV a "b c"', ("a", '"b c"')),
        ("ENV a=b\\ c", ("a", "b\\ c")),
        ("ENV a=", ("a", "")),
        ("LABEL a=1 'b c'=2", ("a", "1", "'b c'", "2")),
        ("ARG a b=1 c=", ("a", "b=1", "c=")),
        ('ARG a="x y"', ('a="x y"',)),
    ],
)
def test_name_value_arguments(text: str, arguments: tuple[str, ...]) -> None:
    assert only(text + "\n").arguments == arguments


def test_parse_words_keeps_quotes_and_escapes() -> None:
    assert parse_words('a \'b c\' "d\\" e" f\\ g', "\\") == ["a", "'b c'", '"d\\" e"', "f\\ g"]
    assert parse_words("''", "\\") == ["''"]
    assert parse_words("a\\", "\\") == ["a"]


def test_json_array() -> None:
    assert json_array('  ["a"]') == ("a",)
    assert json_array("a") is None
    assert json_array("[") is None
    assert json_array("[" * 100_000) is None  # too deep for the decoder: not JSON


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------

MULTI_STAGE = """\
ARG BASE=busybox
ARG V
FROM $BASE AS Builder
RUN make
FROM scratch
COPY --from=builder /out /
FROM builder AS test
RUN test
"""


def test_stages_and_global_args() -> None:
    dockerfile = parse(MULTI_STAGE)
    assert [i.original for i in dockerfile.global_args] == ["ARG BASE=busybox", "ARG V"]
    assert [(s.index, s.name) for s in dockerfile.stages] == [
        (0, "builder"),
        (1, None),
        (2, "test"),
    ]
    assert [i.keyword for i in dockerfile.stages[1].instructions] == ["COPY"]
    assert dockerfile.stage("BUILDER") is dockerfile.stages[0]
    assert dockerfile.stage(1) is dockerfile.stages[1]
    assert dockerfile.stage("test").from_instruction.line == 7


def test_step_count_includes_global_args_and_stops_at_the_target() -> None:
    dockerfile = parse(MULTI_STAGE)
    assert dockerfile.step_count() == 8
    assert dockerfile.step_count("builder") == 4
    assert dockerfile.step_count("Test") == 8
    assert [s.index for s in dockerfile.stages_to_build("builder")] == [0]


@pytest.mark.parametrize("target", ["nope", "0"])
def test_an_unknown_target(target: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse(MULTI_STAGE).stage(target)
    assert str(caught.value) == f"failed to reach build target {target} in Dockerfile"
    with pytest.raises(DockerfileError):
        parse(MULTI_STAGE).stage(7)


def test_a_file_of_global_args_alone_has_no_stage() -> None:
    # dockerd runs "Step 1/1 : ARG a" for it
    dockerfile = parse("ARG a\n")
    assert dockerfile.stages == ()
    assert dockerfile.step_count() == 1


def test_the_result_is_a_value() -> None:
    assert parse(MULTI_STAGE) == parse(MULTI_STAGE)
    assert isinstance(parse(MULTI_STAGE), Dockerfile)


# --------------------------------------------------------------------------------------------
# Errors, in dockerd's words
# --------------------------------------------------------------------------------------------

PARSE_ERRORS = [
    ("FROM scratch\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"),
    ("FROM scratch\n\nfoo \\\n bar\n", "dockerfile parse error line 3: unknown instruction: FOO"),
    ("# just a comment\n", "failed to parse Dockerfile: file with no instructions"),
    (" \n\n", "failed to parse Dockerfile: file with no instructions"),
    ("ENV a=b\nFROM scratch\n", "no build stage in current context"),
    ("FROM scratch\nENV\n", "dockerfile parse error line 2: ENV requires at least one argument"),
    ("FROM scratch\nENV a\n", "dockerfile parse error line 2: ENV must have two arguments"),
    ("FROM scratch\nENV =a\n", "dockerfile parse error line 2: ENV names can not be blank"),
    (
        "FROM scratch\nENV a=1 b\n",
        'dockerfile parse error line 2: Syntax error - can\'t find = in "b". '
        "Must be of the form: name=value",
    ),
    ("FROM scratch\nARG\n", "dockerfile parse error line 2: ARG requires at least one argument"),
    ("FROM scratch\nARG =a\n", "dockerfile parse error line 2: ARG names can not be blank"),
    (
        "FROM scratch\nLABEL\n",
        "dockerfile parse error line 2: LABEL requires at least one argument",
    ),
    ("FROM scratch\nLABEL a\n", "dockerfile parse error line 2: LABEL must have two arguments"),
    ("FROM scratch\nCOPY --foo=1 a b\n", "dockerfile parse error line 2: Unknown flag: foo"),
    ("FROM --foo=1 scratch\n", "dockerfile parse error line 1: Unknown flag: foo"),
    ("FROM scratch\nRUN --chown=1 x\n", "dockerfile parse error line 2: Unknown flag: chown"),
    ("FROM scratch\nADD --from=x a b\n", "dockerfile parse error line 2: Unknown flag: from"),
    (
        "FROM scratch\nCOPY --from a b c\n",
        "dockerfile parse error line 2: Missing a value on flag: from",
    ),
    (
        "FROM scratch\nCOPY --from=a --from=b b c\n",
        "dockerfile parse error line 2: Duplicate flag specified: from",
    ),
    (
        "FROM scratch\nRUN --mount=type=cache,target=/x echo\n",
        "dockerfile parse error line 2: the --mount option requires BuildKit. Refer to "
        "https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled",
    ),
    (
        "FROM scratch\nCOPY a\n",
        "dockerfile parse error line 2: COPY requires at least two arguments, but only one was "
        "provided. Destination could not be determined",
    ),
    (
        "FROM scratch\nADD\n",
        "dockerfile parse error line 2: ADD requires at least two arguments, "
        "but only one was provided. Destination could not be determined",
    ),
    ("FROM\n", "dockerfile parse error line 1: FROM requires either one or three arguments"),
    # dockerd says this one in the stream when it reaches the second FROM
    ("FROM scratch AS foo\nFROM scratch AS FOO\n", "foo stage name already used"),
    ("FROM a b\n", "dockerfile parse error line 1: FROM requires either one or three arguments"),
    ("FROM a IS b\n", "dockerfile parse error line 1: FROM requires either one or three arguments"),
    (
        "FROM scratch AS 1a\n",
        'dockerfile parse error line 1: invalid name for build stage: "1a", '
        "name can't start with a number or contain symbols",
    ),
    (
        "# escape=x\nFROM scratch\n",
        "dockerfile parse error line 1: invalid escape token 'x' does not match ` or \\",
    ),
    (
        "# escape=`\n# escape=`\nFROM scratch\n",
        "dockerfile parse error line 2: only one escape parser directive can be used",
    ),
    (
        "# syntax=x\n# syntax=y\nFROM scratch\n",
        "dockerfile parse error line 2: only one syntax parser directive can be used",
    ),
    ("FROM scratch\nUSER\n", "dockerfile parse error line 2: USER requires exactly one argument"),
    (
        "FROM scratch\nWORKDIR\n",
        "dockerfile parse error line 2: WORKDIR requires exactly one argument",
    ),
    (
        "FROM scratch\nMAINTAINER\n",
        "dockerfile parse error line 2: MAINTAINER requires exactly one argument",
    ),
    (
        "FROM scratch\nSTOPSIGNAL\n",
        "dockerfile parse error line 2: STOPSIGNAL requires exactly one argument",
    ),
    (
        "FROM scratch\nEXPOSE\n",
        "dockerfile parse error line 2: EXPOSE requires at least one argument",
    ),
    (
        "FROM scratch\nVOLUME\n",
        "dockerfile parse error line 2: VOLUME requires at least one argument",
    ),
    (
        'FROM scratch\nVOLUME ["", "a"]\n',
        "dockerfile parse error line 2: VOLUME specified can not be an empty string",
    ),
    (
        "FROM scratch\nSHELL sh -c\n",
        "dockerfile parse error line 2: SHELL requires the arguments to be in JSON form",
    ),
    (
        "FROM scratch\nSHELL []\n",
        "dockerfile parse error line 2: SHELL requires at least one argument",
    ),
    (
        "FROM scratch\nCMD [1]\n",
        "dockerfile parse error line 2: when using JSON array syntax, arrays must be comprised of "
        "strings only",
    ),
    (
        "FROM scratch\nONBUILD FROM x\n",
        "dockerfile parse error line 2: FROM isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM scratch\nONBUILD maintainer x\n",
        "dockerfile parse error line 2: MAINTAINER isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM scratch\nONBUILD ONBUILD RUN x\n",
        "dockerfile parse error line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
    ),
    (
        "FROM scratch\nONBUILD\n",
        "dockerfile parse error line 2: ONBUILD requires at least one argument",
    ),
    ("FROM scratch\nONBUILD ENV a\n", "dockerfile parse error line 2: ENV must have two arguments"),
    (
        "FROM scratch\nHEALTHCHECK --retries=0 CMD x\n",
        "dockerfile parse error line 2: --retries must be at least 1 (not 0)",
    ),
    (
        "FROM scratch\nHEALTHCHECK --retries=x CMD x\n",
        'dockerfile parse error line 2: strconv.ParseInt: parsing "x": invalid syntax',
    ),
    (
        "FROM scratch\nHEALTHCHECK FOO x\n",
        'dockerfile parse error line 2: Unknown type "FOO" in HEALTHCHECK (try CMD)',
    ),
    (
        "FROM scratch\nHEALTHCHECK CMD\n",
        "dockerfile parse error line 2: Missing command after HEALTHCHECK CMD",
    ),
    (
        "FROM scratch\nHEALTHCHECK NONE x\n",
        "dockerfile parse error line 2: HEALTHCHECK NONE takes no arguments",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=abc CMD x\n",
        'dockerfile parse error line 2: time: invalid duration "abc"',
    ),
    (
        "FROM scratch\nHEALTHCHECK --timeout=0s CMD x\n",
        'dockerfile parse error line 2: Interval "timeout" cannot be less than 1ms',
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=1s NONE\n",
        "dockerfile parse error line 2: Unknown flag: interval",
    ),
    (
        "FROM scratch\nHEALTHCHECK\n",
        "dockerfile parse error line 2: HEALTHCHECK requires at least one argument",
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    assert str(caught.value) == message
    assert caught.value.status_code == 400


def test_errors_carry_the_line_even_when_docker_does_not_print_it() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse("FROM scratch\n\nENV a\n")
    assert caught.value.line == 3


def test_an_empty_file_names_the_dockerfile() -> None:
    with pytest.raises(DockerfileError, match=r"^the Dockerfile \(build/Dockerfile\) cannot be "):
        parse("", "build/Dockerfile")


# --------------------------------------------------------------------------------------------
# Hostile input
# --------------------------------------------------------------------------------------------


def test_a_line_over_dockers_limit() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse("FROM scratch\nENV a=" + "x" * 70_000 + "\n")
    assert str(caught.value) == (
        "dockerfile parse error line 2: dockerfile line greater than max allowed size of 65535"
    )
    assert caught.value.line == 2
    # multi-byte characters count in bytes, as Go counts them
    with pytest.raises(DockerfileError):
        parse("FROM scratch\nENV a=" + "é" * 33_000 + "\n")
    assert only("ENV a=" + "x" * (MAX_LINE_BYTES - 10) + "\n").keyword == "ENV"


def test_nul_bytes_are_refused_with_their_line() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse("FROM scratch\nRUN echo a \\\n b\x00c\n")
    assert str(caught.value) == "dockerfile parse error line 2: the instruction holds a NUL byte"
    assert parse("# a comment with a \x00\nFROM scratch\n").stages[0].name is None


def test_onbuild_chains_are_refused_without_recursing() -> None:
    text = "FROM scratch\n" + "ONBUILD " * 8_000 + "RUN x\n"
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    assert str(caught.value) == (
        "dockerfile parse error line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    )


def test_decode() -> None:
    assert decode(b"\xef\xbb\xbfFROM x\n") == "\ufeffFROM x\n"  # parse drops the mark
    with pytest.raises(DockerfileError) as caught:
        decode(b"FROM x\nRUN \xff\n", "Dockerfile.dev")
    assert (
        str(caught.value)
        == "the Dockerfile (Dockerfile.dev) is not UTF-8 text: byte 0xff on line 2"
    )
    assert caught.value.line == 2
    with pytest.raises(DockerfileError, match=r"cannot be empty"):
        decode(b"")


def test_many_instructions_and_stages() -> None:
    text = "".join(f"FROM scratch AS s{n}\nENV n={n}\n" for n in range(2_000))
    dockerfile = parse(text)
    assert len(dockerfile.stages) == 2_000
    assert dockerfile.stage("s1999").instructions[0].line == 4_000
