"""Typed commands: what each instruction means, with variables expanded exactly where dockerd's
classic builder expands them."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build.commands import (
    CHANGE_KEYWORDS,
    PREDEFINED_ARGS,
    Arg,
    Cmd,
    Command,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    expose_ports,
    parse_change,
    parse_changes,
    to_command,
)
from dockyard.daemon.build.dockerfile import parse
from dockyard.daemon.build.shell_words import ExpansionError

VARIABLES = {"X": "x1", "DIR": "/app", "Y": "a b", "PORT": "8080", "E": ""}
SECOND = 1_000_000_000


def command(text: str, variables: dict[str, str] = VARIABLES) -> Command:
    dockerfile = parse("FROM scratch\n" + text + "\n")
    (instruction,) = dockerfile.stages[0].instructions
    return to_command(instruction, variables, dockerfile.escape)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # expanded
        (
            "ENV a=$X b=${DIR}/bin c=\"$Y\" d='$X'",
            Env((("a", "x1"), ("b", "/app/bin"), ("c", "a b"), ("d", "$X"))),
        ),
        ("ENV $X=1", Env((("x1", "1"),))),
        ("ENV a $X and more", Env((("a", "x1 and more"),))),  # the legacy form
        ('ENV a "b  c"', Env((("a", "b  c"),))),
        ("ENV a=1 b=$a", Env((("a", "1"), ("b", "")))),  # one instruction sees the old values
        ('LABEL "com.x"="$X y" v=2', Label((("com.x", "x1 y"), ("v", "2")))),
        ("ARG a b=$X c=", Arg((("a", None), ("b", "x1"), ("c", "")))),
        ('ARG q="x y"', Arg((("q", "x y"),))),
        ("WORKDIR $DIR/sub", Workdir("/app/sub")),
        ("WORKDIR ${E:-/default}", Workdir("/default")),
        ("USER ${X}:grp", User("x1:grp")),
        ("VOLUME $DIR /data", Volume(("/app", "/data"))),
        ('VOLUME ["$DIR", "/b"]', Volume(("/app", "/b"))),
        ("STOPSIGNAL SIG${X:+TERM}", StopSignal("SIGTERM")),
        ("STOPSIGNAL 9", StopSignal("9")),
        ("EXPOSE $PORT 53/udp", Expose(("8080/tcp", "53/udp"))),
        (
            "COPY --chown=$X:$X --chmod=644 $DIR/a ${X}.txt /dst/",
            Copy(("/app/a", "x1.txt"), "/dst/", None, "x1:x1", "644", False),
        ),
        ("COPY --from=${X} /a /b", Copy(("/a",), "/b", "x1", None, None, False)),
        ('ADD ["$X", "/d"]', Copy(("x1",), "/d", None, None, None, True)),
        # shell-form ADD splits on blanks first, escapes or not, as dockerd's parser does
        ("ADD a\\ b /d", Copy(("a", "b"), "/d", None, None, None, True)),
        # not expanded
        ("RUN echo $X", Run(("echo $X",), True)),
        ('RUN ["echo", "$X"]', Run(("echo", "$X"), False)),
        ("RUN", Run((), True)),
        ("CMD echo $X", Cmd(("echo $X",), True)),
        ('CMD ["$X"]', Cmd(("$X",), False)),
        ("ENTRYPOINT exec $X", Entrypoint(("exec $X",), True)),
        ("ENTRYPOINT []", Entrypoint((), False)),
        ('SHELL ["/bin/bash", "-c"]', Shell(("/bin/bash", "-c"))),
        ("ONBUILD RUN echo $X", Onbuild("RUN echo $X")),
        ("onbuild   COPY  a b", Onbuild("COPY  a b")),
        ("MAINTAINER Jane $X <j@x>", Maintainer("Jane $X <j@x>")),
        ("HEALTHCHECK NONE", Healthcheck(("NONE",), 0, 0, 0, 0)),
        (
            "HEALTHCHECK --interval=5s --timeout=1m30s --start-period=100ms --retries=3 "
            "CMD curl -f $X",
            Healthcheck(("CMD-SHELL", "curl -f $X"), 5 * SECOND, 90 * SECOND, SECOND // 10, 3),
        ),
        ('HEALTHCHECK CMD ["true"]', Healthcheck(("CMD", "true"), 0, 0, 0, 0)),
    ],
)
def test_to_command(text: str, expected: Command) -> None:
    assert command(text) == expected


def test_from_expands_with_the_variables_given_and_keeps_the_stage_name() -> None:
    dockerfile = parse("ARG BASE=busybox\nFROM --platform=$P ${BASE}:1 AS Build\n")
    from_instruction = dockerfile.stages[0].from_instruction
    assert to_command(from_instruction, {"BASE": "alpine", "P": "linux/arm64"}) == From(
        "alpine:1", "build", "linux/arm64"
    )
    assert to_command(from_instruction, {"BASE": "alpine"}) == From("alpine:1", "build", None)
    blank = parse("FROM $NOPE\n").stages[0].from_instruction
    with pytest.raises(InvalidParameter, match=r"^base name \(\$NOPE\) should not be blank$"):
        to_command(blank, {})


def test_the_escape_directive_reaches_expansion() -> None:
    dockerfile = parse("# escape=`\nFROM scratch\nENV a=`$X b=C:\\dir\n")
    (env,) = dockerfile.stages[0].instructions
    assert to_command(env, VARIABLES, dockerfile.escape) == Env((("a", "$X"), ("b", "C:\\dir")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV a=${X", "failed to process \"${X\": missing ':' in substitution"),
        (
            'ENV a="1',
            'failed to process "\\"1": unexpected end of statement while looking '
            "for matching double-quote",
        ),
        # shell-form COPY splits on blanks before expanding: dockerd said exactly this
        (
            'COPY "a b" c',
            'failed to process "\\"a": unexpected end of statement while '
            "looking for matching double-quote",
        ),
    ],
)
def test_expansion_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as caught:
        command(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("specs", "keys"),
    [
        (["80"], ("80/tcp",)),
        (["80/UDP"], ("80/udp",)),
        (["8000-8002/udp"], ("8000/udp", "8001/udp", "8002/udp")),
        (["9/sctp", "9"], ("9/sctp", "9/tcp")),
        (["80", "80/tcp"], ("80/tcp",)),
        (["0", "65535"], ("0/tcp", "65535/tcp")),
    ],
)
def test_expose_ports(specs: list[str], keys: tuple[str, ...]) -> None:
    assert expose_ports(specs) == keys


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("70000", "Invalid containerPort: 70000"),  # dockerd's words
        ("80/foo", "Invalid proto: foo"),  # dockerd's words
        ("http", "Invalid containerPort: http"),
        ("9000-8000", "Invalid containerPort: 9000-8000"),
        ("1-70000", "Invalid containerPort: 1-70000"),
        ("-1", "Invalid containerPort: -1"),
        ("/tcp", "No port specified: /tcp<empty>"),
        ("\uff11\uff12", "Invalid containerPort: \uff11\uff12"),  # fullwidth digits: no port
    ],
)
def test_expose_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        expose_ports([spec])
    assert str(caught.value) == message


def test_stopsignal_is_checked() -> None:
    with pytest.raises(InvalidParameter, match=r"^Invalid signal: SIGNOPE$"):
        command("STOPSIGNAL SIGNOPE")


def test_volume_that_expands_to_nothing() -> None:
    with pytest.raises(InvalidParameter, match="VOLUME specified can not be an empty string"):
        command("VOLUME $E")


def test_predefined_args() -> None:
    assert set(PREDEFINED_ARGS) == {
        f"{name}_PROXY" for name in ("HTTP", "HTTPS", "FTP", "NO", "ALL")
    } | {f"{name}_proxy" for name in ("http", "https", "ftp", "no", "all")}


# --------------------------------------------------------------------------------------------
# docker commit/import --change
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ('CMD ["x"]', Cmd(("x",), False)),
        ("cmd echo hi", Cmd(("echo hi",), True)),
        ("ENV Z=1", Env((("Z", "1"),))),
        ("ENV P=$PATH:/x", Env((("P", "/bin:/x"),))),
        ("EXPOSE 80 81/udp", Expose(("80/tcp", "81/udp"))),
        ("LABEL a=b", Label((("a", "b"),))),
        ("USER nobody", User("nobody")),
        ("WORKDIR /w", Workdir("/w")),
        ("VOLUME /v", Volume(("/v",))),
        ('ENTRYPOINT ["/e"]', Entrypoint(("/e",), False)),
        ("ONBUILD RUN x", Onbuild("RUN x")),
        ("HEALTHCHECK NONE", Healthcheck(("NONE",), 0, 0, 0, 0)),
    ],
)
def test_parse_change(change: str, expected: Command) -> None:
    assert parse_change(change, {"PATH": "/bin"}) == expected


def test_changes_are_read_as_one_dockerfile() -> None:
    # what dockerd 20.10 made of: commit -c "ENV a=1 \\" -c "b=2"; -c "CMD a\nCMD b";
    # and -c "# escape=`" -c 'ENV a=b`' -c "c=d"
    assert parse_changes(["ENV a=1 \\", "b=2"]) == [Env((("a", "1"), ("b", "2")))]
    assert parse_changes(["CMD a\nCMD b"]) == [Cmd(("a",), True), Cmd(("b",), True)]
    assert parse_changes(["# escape=`", "ENV a=b`", "c=d"]) == [Env((("a", "bc=d"),))]
    assert parse_changes(["ENV P=$PATH:/x"]) == [Env((("P", ":/x"),))]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # dockerd 20.10's answers to docker commit -c ...
        (["RUN x"], "run is not a valid change command"),
        (["FOO x"], "foo is not a valid change command"),
        (["STOPSIGNAL SIGINT"], "stopsignal is not a valid change command"),
        (["MAINTAINER x"], "maintainer is not a valid change command"),
        (["ARG a"], "arg is not a valid change command"),
        (['SHELL ["a"]'], "shell is not a valid change command"),
        ([""], "file with no instructions"),
        (["ENV a"], "ENV must have two arguments"),
        (["LABEL a"], "LABEL must have two arguments"),
        (["USER"], "USER requires exactly one argument"),
        (["EXPOSE x"], "Invalid containerPort: x"),
        (["HEALTHCHECK --interval=0s CMD x"], 'Interval "interval" cannot be less than 1ms'),
        (["ENV a=${X"], "failed to process \"${X\": missing ':' in substitution"),
    ],
)
def test_parse_changes_errors(changes: list[str], message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_changes(changes)
    assert str(caught.value) == message


def test_parse_change_takes_one_instruction() -> None:
    with pytest.raises(InvalidParameter, match=r"^a change is one instruction; 'CMD a\\nCMD b' "):
        parse_change("CMD a\nCMD b")


def test_change_keywords() -> None:
    assert "RUN" not in CHANGE_KEYWORDS
    assert "CMD" in CHANGE_KEYWORDS
