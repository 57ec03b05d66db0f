"""``pull`` and ``push``: the daemon moves images between its store and a registry; the client
names the image, sends the stored login of that registry, and draws the daemon's progress.

Requests are the docker CLI's (engine-api.md §4.2, §4.3; engine-api-2.md §4):

* ``POST /images/create?fromImage=NAME&tag=TAG`` (a digest travels as the tag; ``platform``
  when asked), ``POST /images/NAME/push?tag=TAG``; NAME is the fully qualified repository
  (``docker.io/library/busybox``), as docker normalises it;
* ``X-Registry-Auth``: the login of the image's registry from the login store, ``e30=``
  (``{}``) when there is none (:mod:`~dockyard.commands.credentials`);
* the answer, a JSON-message stream, is drawn by :mod:`~dockyard.commands.jsonmessages`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from dockyard.commands.common import UsageError, make_client

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
#: docker's reference grammar (distribution/reference), enough to refuse what it refuses.
#: Patterns, not compiled at import: ``re`` loads only when a command parses a reference.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"


class ImageReference:
    """A normalised reference: ``domain/path`` with a tag, a digest, or neither.

    A plain class: a NamedTuple costs every command ~0.5 ms of start-up to define.
    """

    __slots__ = ("digest", "domain", "path", "tag")

    def __init__(self, domain: str, path: str, tag: str = "", digest: str = "") -> None:
        self.domain, self.path, self.tag, self.digest = domain, path, tag, digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageReference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"ImageReference({str(self)!r})"

    @property
    def name(self) -> str:
        """The fully qualified repository (docker's ``reference.Name``)."""
        return f"{self.domain}/{self.path}"

    @property
    def api_tag(self) -> str:
        """What ``tag=`` carries: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_default_tag(self) -> ImageReference:
        if self.tag or self.digest:
            return self
        return ImageReference(self.domain, self.path, DEFAULT_TAG)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """``[DOMAIN/]PATH[:TAG][@DIGEST]`` normalised as docker's ``ParseNormalizedNamed``:
    the first component is a registry when it has a ``.`` or ``:`` or is ``localhost``;
    otherwise the image is Docker Hub's, and a one-component name is in ``library/``."""
    import re

    remainder, _, digest = text.partition("@")
    tag = ""
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, remainder
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if path != path.lower() and re.fullmatch(_NAME, path.lower()):
        raise UsageError(f"invalid reference format: repository name ({path}) must be lowercase")
    valid = (
        re.fullmatch(_DOMAIN, domain)
        and re.fullmatch(_NAME, path)
        and (not tag or re.fullmatch(_TAG, tag))
        and (not digest or re.fullmatch(_DIGEST, digest))
    )
    # "name:" and "name@" name an empty tag or digest: not a reference (docker's grammar).
    if not valid or text.endswith((":", "@")):
        raise UsageError("invalid reference format")
    return ImageReference(domain, path, tag, digest)


def stored_login(reference: ImageReference) -> Any:
    """The login kept for ``reference``'s registry (a ``StoredLogin``), or ``None``."""
    from dockyard.commands.credentials import CredentialsError, LoginStore

    try:
        return LoginStore().get(reference.domain)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None


def registry_auth(reference: ImageReference) -> str:
    """``X-Registry-Auth`` for ``reference``'s registry: its stored login, or ``e30=``."""
    from dockyard.commands.credentials import registry_auth_header

    return registry_auth_header(stored_login(reference))


def _prompted_auth(reference: ImageReference, command: str) -> str:
    """The docker CLI's answer to a 401: ask for a login on the terminal and use it for one
    more try, without keeping it (``login`` keeps logins)."""
    from dockyard.commands.credentials import StoredLogin, login_key, registry_auth_header
    from dockyard.commands.logins import ask_login

    print(f"\nLogin prior to {command}:", flush=True)
    known = stored_login(reference)
    username, password = ask_login("", "", known.username if known else "")
    return registry_auth_header(StoredLogin(login_key(reference.domain), username, password))


def send_with_login(
    client: Any,
    path: str,
    query: dict[str, Any],
    reference: ImageReference,
    command: str,
) -> Any:
    """``POST`` with the stored login; a 401 asks for one and tries once more, as docker."""
    from dockyard.client import APIError

    def send(auth: str) -> Any:
        headers = {"X-Registry-Auth": auth}
        return client.request("POST", path, query, headers=headers, streaming=True)

    try:
        return send(registry_auth(reference))
    except APIError as exc:
        if exc.status != 401:
            raise
    return send(_prompted_auth(reference, command))


def pull_image(
    client: Any,
    reference: ImageReference,
    out: TextIO,
    platform: str | None = None,
    all_tags: bool = False,
    ask_on_401: bool = False,
) -> None:
    """``POST /images/create`` and draw its stream on ``out``; an error in the stream raises
    :class:`~dockyard.client.StreamError`. ``ask_on_401``: as ``docker pull``, a 401 asks
    for a login (``run``'s pull does not)."""
    from dockyard.commands.jsonmessages import display_json_messages

    query = {
        "fromImage": reference.name,
        "tag": None if all_tags else reference.api_tag,
        "platform": platform.lower() if platform else None,
    }
    if ask_on_401:
        response = send_with_login(client, "/images/create", query, reference, "pull")
    else:
        headers = {"X-Registry-Auth": registry_auth(reference)}
        response = client.request("POST", "/images/create", query, headers=headers, streaming=True)
    display_json_messages(response, out)


def _stream_failure(exc: Exception) -> int:
    """An error the daemon sent inside its stream: its text alone, as docker prints it."""
    print(str(exc), file=sys.stderr)
    return 1


def cmd_pull(args: argparse.Namespace) -> int:
    from dockyard.client import StreamError
    from dockyard.commands.jsonmessages import Discard

    reference = parse_reference(args.name)
    if args.all_tags and (reference.tag or reference.digest):
        raise UsageError("tag can't be used with --all-tags/-a")
    if not args.all_tags and not (reference.tag or reference.digest):
        reference = reference.with_default_tag()
        if not args.quiet:
            print(f"Using default tag: {DEFAULT_TAG}", flush=True)
    out: Any = Discard() if args.quiet else sys.stdout
    try:
        pull_image(make_client(args), reference, out, args.platform, args.all_tags, True)
    except StreamError as exc:
        return _stream_failure(exc)
    print(reference)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from dockyard.client import StreamError
    from dockyard.commands.jsonmessages import Discard, display_json_messages

    reference = parse_reference(args.name)
    if reference.digest:
        raise UsageError("cannot push a digest reference")
    if args.all_tags and reference.tag:
        raise UsageError("tag can't be used with --all-tags/-a")
    if not args.all_tags and not reference.tag:
        reference = reference.with_default_tag()
        if not args.quiet:
            print(f"Using default tag: {DEFAULT_TAG}", flush=True)
    client = make_client(args)
    query = {"tag": None if args.all_tags else reference.tag}
    # The name goes into the path with its slashes, as docker sends it.
    path = f"/images/{reference.name}/push"
    out: Any = Discard() if args.quiet else sys.stdout
    try:
        response = send_with_login(client, path, query, reference, "push")
        display_json_messages(response, out)
    except StreamError as exc:
        return _stream_failure(exc)
    if args.quiet:
        print(reference)
    return 0


def _pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    parser.add_argument("-a", "--all-tags", action="store_true", help="every tagged image")
    parser.add_argument("--platform", help="os[/arch[/variant]] when the image has several")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the reference")


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME[:TAG]")
    parser.add_argument("-a", "--all-tags", action="store_true", help="every tag of the name")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the reference")


#: (top-level command, ``image`` subcommand, help, arguments, handler)
DISTRIBUTION_COMMANDS = [
    ("pull", ("pull",), "download an image from a registry", _pull_arguments, cmd_pull),
    ("push", ("push",), "upload an image to a registry", _push_arguments, cmd_push),
]
