"""Container commands: ``run``, ``create``, ``start``, ``stop``, ``ps``, ``logs``, ``exec``,
``attach``, ``stats``… top-level and under ``container``, with their flags."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from dockyard.commands.common import (
    CommandSpec,
    UsageError,
    add_command_group,
    confirm,
    container_path,
    for_each_name,
    make_client,
    parse_filters,
    parse_labels,
    table_or_json,
)
from dockyard.commands.filesystem import FILESYSTEM_COMMANDS
from dockyard.commands.health import health_arguments, healthcheck_field
from dockyard.commands.inspection import cmd_inspect, inspect_arguments
from dockyard.commands.networks import (
    NetworkFlagError,
    container_network_arguments,
    container_network_fields,
)
from dockyard.commands.output import (
    DOCKER_MIN_WIDTH,
    created_since,
    ellipsis,
    go_time,
    human_size,
    human_size_decimal,
    print_prune_report,
    print_rows,
    print_table,
    truncate_id,
)
from dockyard.commands.ports import PortSpecError, cmd_port, displayable_ports, port_arguments
from dockyard.commands.process_flags import ProcessFlagError, process_arguments, process_fields
from dockyard.commands.streams import (
    DEFAULT_DETACH_KEYS,
    AttachSession,
    RawTerminal,
    SignalProxy,
    parse_detach_keys,
    resize_tty,
    stdin_fileno,
    terminal_size,
)
from dockyard.core.units import ram_in_bytes

#: docker's exit statuses for ``run`` (docker/cli ``run.go`` ``toStatusError``).
EXIT_DAEMON_ERROR, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 125, 126, 127
#: docker's `run --pull` choices.
PULL_POLICIES = ("always", "missing", "never")
PS_HEADERS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
#: docker cuts COMMAND to this many characters (before quoting it) unless --no-trunc.
COMMAND_WIDTH = 20
#: ... and each name in ``--format json``'s Mounts to this many.
MOUNT_NAME_WIDTH = 15


class RunError(Exception):
    """A ``run``/``create``/``start`` failure with docker's exit status (125 and up)."""

    def __init__(self, message: str, status: int = EXIT_DAEMON_ERROR) -> None:
        super().__init__(message)
        self.status = status


def nano_cpus(text: str) -> int:
    """``--cpus 1.5`` as ``HostConfig.NanoCpus``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid value {text} for --cpus")
    return round(value * 1e9)


def parse_restart(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise ValueError(f"invalid restart policy {text!r}")
    if count and name != "on-failure":
        raise ValueError(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise ValueError(f"maximum retry count must be an integer: {count!r}") from None
    return {"Name": name, "MaximumRetryCount": retries}


def _env_entries(values: Sequence[str] | None) -> list[str]:
    """``-e KEY=VALUE``, or ``-e KEY`` to pass this environment's value: left out when it
    is unset here (sending the bare name would set it empty in the container)."""
    entries = []
    for value in values or ():
        if "=" in value:
            entries.append(value)
        elif value in os.environ:
            entries.append(f"{value}={os.environ[value]}")
    return entries


def _env_file_entries(paths: Sequence[str] | None) -> list[str]:
    """``--env-file`` lines as docker reads them: ``KEY=VALUE``, or ``KEY`` for this
    environment's value (left out when unset); blank lines and ``#`` comments skipped."""
    entries = []
    for path in paths or ():
        try:
            with open(path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"{path}: cannot read the env file: {exc}") from None
        for number, raw in enumerate(lines, 1):
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            name, separator, value = line.partition("=")
            name = name.lstrip()
            if not name:
                raise RunError(f"{path}: no variable name on line {number}: '{raw}'")
            if any(character.isspace() for character in name):
                raise RunError(f"{path}: variable '{name}' contains whitespaces")
            if separator:
                entries.append(f"{name}={value}")
            elif name in os.environ:
                entries.append(f"{name}={os.environ[name]}")
    return entries


def _log_config(driver: str, options: Sequence[str] | None) -> dict[str, Any]:
    """``--log-driver``/``--log-opt`` as ``HostConfig.LogConfig``, checked as the docker CLI."""
    config = dict(option.partition("=")[::2] for option in options or ())
    if driver == "none" and config:
        raise RunError("invalid logging opts for driver none")
    return {"Type": driver, "Config": config}


def container_create_body(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /containers/create``'s body from ``run``/``create`` flags, as docker fills it."""
    try:
        memory = ram_in_bytes(args.memory) if args.memory else 0
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.memory}" for "-m, --memory" flag: {exc}') from None
    try:
        cpus = nano_cpus(args.cpus) if args.cpus else 0
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.cpus}" for "--cpus" flag: {exc}') from None
    try:
        restart = parse_restart(args.restart or "no")
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.restart}" for "--restart" flag: {exc}') from None
    if args.rm and restart["Name"] != "no":
        raise RunError("conflicting options: cannot specify both --restart and --rm")
    detached = getattr(args, "detach", False)
    attach_stdin = args.interactive and not detached
    binds: list[str] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for spec in args.volume or ():
        if ":" in spec:
            binds.append(spec)
        else:  # a bare container path is an anonymous volume
            anonymous[spec] = {}
    entrypoint = None if args.entrypoint is None else [args.entrypoint]
    try:
        healthcheck = healthcheck_field(args)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    try:
        networking = container_network_fields(args)
        process = process_fields(args)
    except (NetworkFlagError, PortSpecError, ProcessFlagError) as exc:
        raise RunError(str(exc)) from None
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "Tmpfs": dict(t.partition(":")[::2] for t in args.tmpfs) if args.tmpfs else None,
        "VolumesFrom": args.volumes_from,
        "AutoRemove": args.rm,
        "RestartPolicy": restart,
        "Memory": memory,
        "NanoCpus": cpus,
        "PidsLimit": args.pids_limit,
        "Privileged": args.privileged,
        "CapAdd": args.cap_add,
        "CapDrop": args.cap_drop,
        "ReadonlyRootfs": args.read_only,
        "UsernsMode": args.userns or "",
        "SecurityOpt": args.security_opt,
        "LogConfig": _log_config(args.log_driver, args.log_opt),
        "ConsoleSize": list(terminal_size()) if args.tty else [0, 0],
        **networking.pop("HostConfig"),
        **process,
    }
    networking_config = networking.pop("NetworkingConfig")
    return {
        **networking,
        "User": args.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": not detached,
        "AttachStderr": not detached,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": attach_stdin,
        "Env": _env_file_entries(args.env_file) + _env_entries(args.env),
        "Cmd": args.command or None,
        "Image": args.image,
        "Volumes": anonymous or None,
        "WorkingDir": args.workdir or "",
        "Entrypoint": entrypoint,
        "Labels": parse_labels(args.label),
        "Healthcheck": healthcheck,
        "HostConfig": host_config,
        "NetworkingConfig": networking_config,
    }


def _pull_for_create(client: Any, args: argparse.Namespace) -> None:
    """Pull the image for ``run``/``create``, its progress on stderr (nowhere with ``-q``),
    as the docker CLI pulls it."""
    from dockyard.commands.distribution import parse_reference, pull_image
    from dockyard.commands.jsonmessages import Discard

    reference = parse_reference(args.image)
    out: Any = Discard() if args.quiet else sys.stderr
    pull_image(client, reference, out)


def _familiar(image: str) -> str:
    """The name docker shows: Docker Hub's without ``docker.io/library/``, a tag added."""
    from dockyard.commands.distribution import DEFAULT_DOMAIN, parse_reference

    reference = parse_reference(image).with_default_tag()
    text = str(reference)
    if reference.domain == DEFAULT_DOMAIN:
        text = text.removeprefix(f"{DEFAULT_DOMAIN}/").removeprefix("library/")
    return text


def create_container(client: Any, args: argparse.Namespace, body: dict[str, Any]) -> str:
    """Create; warnings go to stderr. As docker's ``--pull``: ``always`` pulls first,
    ``missing`` (the default) pulls when create answers 404 and creates again, ``never``
    leaves the daemon's "No such image" as the answer."""
    from dockyard.client import APIError

    query = {"name": args.name}
    if args.pull == "always":
        _pull_for_create(client, args)
    try:
        created = client.call_json("POST", "/containers/create", query, body)
    except APIError as exc:
        if exc.status != 404 or args.pull != "missing":
            raise
        if not args.quiet:
            print(f"Unable to find image '{_familiar(args.image)}' locally", file=sys.stderr)
        _pull_for_create(client, args)
        created = client.call_json("POST", "/containers/create", query, body)
    for warning in created.get("Warnings") or ():
        print(f"WARNING: {warning}", file=sys.stderr)
    container_id: str = created["Id"]
    return container_id


def pull_policy(value: str) -> str:
    if value not in PULL_POLICIES:
        raise argparse.ArgumentTypeError(
            f'invalid pull option: \'{value}\': must be one of "always", "missing" or "never"'
        )
    return value


def start_error_status(message: str) -> int:
    """``run``'s exit status for a failed start: 126 cannot execute, 127 not found."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return EXIT_NOT_FOUND
    if "permission denied" in lowered:
        return EXIT_CANNOT_EXECUTE
    return EXIT_DAEMON_ERROR


def start_container(client: Any, container_id: str) -> None:
    """``POST /start``; a failure is a :class:`RunError` with docker's status for it."""
    from dockyard.client import APIError

    try:
        client.call_json("POST", container_path(container_id, "/start"))
    except APIError as exc:
        message = f"Error response from daemon: {exc}"
        raise RunError(message, start_error_status(str(exc))) from None


def _attached_run(
    client: Any,
    container_id: str,
    config: dict[str, Any],
    wait_condition: str,
    detach_keys: bytes,
    sig_proxy: bool,
    start: bool = True,
    detach_spec: str = "",
) -> int:
    """Attach, wait (headers first), start, stream; docker's order (engine-api.md §5.1).

    ``detach_spec`` is the user's ``--detach-keys`` text, sent for the daemon to watch too
    (as the docker CLI does). Returns the container's exit status (0 after a detach).
    """
    tty = bool(config.get("Tty"))
    attach_stdin = bool(config.get("AttachStdin"))
    stdin_fd = stdin_fileno() if attach_stdin else None
    query = {
        "stream": 1,
        "stdin": 1 if attach_stdin else None,
        "stdout": 1 if config.get("AttachStdout", True) else None,
        "stderr": 1 if config.get("AttachStderr", True) else None,
        "detachKeys": detach_spec or None,
    }
    stream = client.hijack(container_path(container_id, "/attach"), query)
    raw_fd = stdin_fd if tty and stdin_fd is not None and os.isatty(stdin_fd) else None
    # The daemon answers wait's headers at once; its body comes when the container is done.
    waiter = client.request(
        "POST",
        container_path(container_id, "/wait"),
        {"condition": wait_condition},
        streaming=True,
    )
    session = AttachSession(stream, tty, stdin_fd, detach_keys)
    resize_path = container_path(container_id, "/resize")
    proxy = SignalProxy(
        sig_proxy,
        lambda name: client.call_json(
            "POST", container_path(container_id, "/kill"), {"signal": name}
        ),
        (lambda: resize_tty(client, resize_path, retry=False)) if tty else None,
    )
    with RawTerminal(raw_fd), proxy:
        session.start_input()
        if start:
            try:
                start_container(client, container_id)
            except RunError:
                session.close()
                if wait_condition == "removed":
                    # With AutoRemove the daemon removes it: docker waits for that to finish.
                    with contextlib.suppress(Exception):
                        waiter.read()
                raise
        if tty:
            resize_tty(client, resize_path)
        try:
            session.copy_output()
        finally:
            session.close()
    if session.detached:
        waiter.close()
        return 0
    return _wait_status(waiter)


def _wait_status(response: Any) -> int:
    from dockyard.client import transport_errors

    try:
        raw = response.read()
    except transport_errors() as exc:
        raise RunError(f"Error waiting for container: {exc or type(exc).__name__}") from None
    try:
        result = json.loads(raw)
    except ValueError:
        raise RunError(raw.decode(errors="replace").strip() or "wait: no answer") from None
    error = result.get("Error")
    if error:  # docker treats any Error object as a failure of the wait
        message = error.get("Message", "") if isinstance(error, dict) else str(error)
        raise RunError(f"Error waiting for container: {message}")
    status: int = result.get("StatusCode", 0)
    return status


def _client_failure(exc: Exception) -> str:
    """The one-line text for a failure talking to the daemon, as docker words it."""
    from dockyard.client import APIError, StreamError

    if isinstance(exc, StreamError):  # sent inside a pull's stream: docker prints it bare
        return str(exc)
    return f"Error response from daemon: {exc}" if isinstance(exc, APIError) else str(exc)


def cmd_run(args: argparse.Namespace) -> int:
    """``docker run``: its own errors and the daemon's exit 125; the container's status else."""
    from dockyard.client import APIError, DaemonUnreachable, StdCopyError

    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)  # docker: before anything
        return 1
    try:
        detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
        body = container_create_body(args)
        client = make_client(args)
        container_id = create_container(client, args, body)
        if args.detach:
            print(container_id, flush=True)  # docker prints it before starting, come what may
            start_container(client, container_id)
            return 0
        condition = "removed" if args.rm else "next-exit"
        return _attached_run(
            client,
            container_id,
            body,
            condition,
            detach_keys,
            args.sig_proxy,
            detach_spec=args.detach_keys or "",
        )
    except (RunError, UsageError, APIError, DaemonUnreachable, StdCopyError) as exc:
        print(f"dockyard: {_client_failure(exc)}\n", file=sys.stderr)
        print("Run 'dockyard run --help' for more information", file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else EXIT_DAEMON_ERROR


def cmd_create(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, DaemonUnreachable

    try:
        body = container_create_body(args)
        client = make_client(args)
        print(create_container(client, args, body))
        return 0
    except (RunError, APIError, DaemonUnreachable) as exc:
        print(f"dockyard: {_client_failure(exc)}", file=sys.stderr)
        return EXIT_DAEMON_ERROR


def cmd_start(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    if not (args.attach or args.interactive):
        return for_each_name(
            args.containers,
            lambda name: client.call_json("POST", container_path(name, "/start")),
        )
    if len(args.containers) > 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    try:
        detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
        container = client.get_json(container_path(args.containers[0], "/json"))
        config = dict(container.get("Config") or {})
        config["AttachStdin"] = args.interactive and bool(config.get("OpenStdin"))
        config["AttachStdout"] = config["AttachStderr"] = True
        # "next-exit": the status of the run this start begins, not of an earlier one;
        # "removed" for an AutoRemove container, which is gone once it has exited.
        auto_remove = (container.get("HostConfig") or {}).get("AutoRemove")
        condition = "removed" if auto_remove else "next-exit"
        return _attached_run(
            client,
            container["Id"],
            config,
            condition,
            detach_keys,
            True,
            detach_spec=args.detach_keys or "",
        )
    except (RunError, APIError, StdCopyError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else 1


def _post_to_each(
    args: argparse.Namespace, action: str, query: dict[str, Any] | None = None
) -> int:
    """``POST /containers/<name>/<action>`` for every named container, reporting like docker."""
    client = make_client(args)
    return for_each_name(
        args.containers,
        lambda name: client.call_json("POST", container_path(name, f"/{action}"), query),
    )


def cmd_stop(args: argparse.Namespace) -> int:
    # 304 (already stopped) is a success, as for docker.
    return _post_to_each(args, "stop", {"t": args.time, "signal": args.signal})


def cmd_restart(args: argparse.Namespace) -> int:
    return _post_to_each(args, "restart", {"t": args.time, "signal": args.signal})


def cmd_kill(args: argparse.Namespace) -> int:
    return _post_to_each(args, "kill", {"signal": args.signal})


def cmd_pause(args: argparse.Namespace) -> int:
    return _post_to_each(args, "pause")


def cmd_unpause(args: argparse.Namespace) -> int:
    return _post_to_each(args, "unpause")


def cmd_rm(args: argparse.Namespace) -> int:
    client = make_client(args)
    query = {"force": 1 if args.force else None, "v": 1 if args.volumes else None}
    return for_each_name(
        args.containers,
        lambda name: client.call_json("DELETE", container_path(name), query),
    )


def cmd_wait(args: argparse.Namespace) -> int:
    client = make_client(args)

    def wait(name: str) -> None:
        response = client.request(
            "POST", container_path(name, "/wait"), {"condition": "not-running"}, streaming=True
        )
        result = json.loads(response.read())
        print(result.get("StatusCode", 0), flush=True)

    return for_each_name(args.containers, wait, echo=False)


def cmd_rename(args: argparse.Namespace) -> int:
    make_client(args).call_json("POST", container_path(args.old, "/rename"), {"name": args.new})
    return 0


def update_body(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /containers/<name>/update``'s body: only the limits the flags name."""
    body: dict[str, Any] = {}
    try:
        if args.memory is not None:
            body["Memory"] = ram_in_bytes(args.memory)
        if args.cpus is not None:
            body["NanoCpus"] = nano_cpus(args.cpus)
        if args.restart is not None:
            body["RestartPolicy"] = parse_restart(args.restart)
    except ValueError as exc:
        raise RunError(str(exc), status=1) from None
    if args.pids_limit is not None:
        body["PidsLimit"] = args.pids_limit
    if not body:
        raise RunError("you must provide one or more flags when using this command", status=1)
    return body


def cmd_update(args: argparse.Namespace) -> int:
    try:
        body = update_body(args)
    except RunError as exc:
        print(exc, file=sys.stderr)
        return exc.status
    client = make_client(args)
    warnings: list[str] = []

    def update(name: str) -> None:
        answer = client.call_json("POST", container_path(name, "/update"), body=body)
        warnings.extend((answer or {}).get("Warnings") or ())

    status = for_each_name(args.containers, update)
    for warning in warnings:
        print(warning, file=sys.stderr)
    return status


def _container_names(container: dict[str, Any]) -> str:
    # Names with a second "/" are links (/other/alias): docker shows only the own names.
    names = [n[1:] for n in container.get("Names") or () if "/" not in n[1:]]
    return ",".join(names)


def _mount_name(mount: dict[str, Any], truncate: bool) -> str:
    name = mount.get("Name") or mount.get("Source", "")
    return ellipsis(name, MOUNT_NAME_WIDTH) if truncate else name


def _ps_row(container: dict[str, Any], truncate: bool) -> dict[str, Any]:
    """One ``ps`` row, keyed like docker's container formatter (``--format json`` keys)."""
    command = container.get("Command", "")
    image = container.get("Image", "") or "<no image>"
    if truncate:
        command = ellipsis(command, COMMAND_WIDTH)
        if image.startswith("sha256:"):
            image = truncate_id(image)
    created = container.get("Created", 0)
    labels = container.get("Labels") or {}
    mounts = container.get("Mounts") or []
    networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
    container_id = container.get("Id", "")
    return {
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": go_time(created),
        "ID": container_id[:12] if truncate else container_id,
        "Image": image,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Driver") == "local")),
        "Mounts": ",".join(_mount_name(m, truncate) for m in mounts),
        "Names": _container_names(container),
        "Networks": ",".join(sorted(networks)),
        "Platform": None,  # docker 28 has the field; /containers/json has no platform to show
        "Ports": displayable_ports(container.get("Ports") or ()),
        "RunningFor": created_since(created),
        "Size": "0B",
        "State": container.get("State", ""),
        "Status": container.get("Status", ""),
    }


def cmd_ps(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    limit = 1 if args.latest else args.last
    query = {
        "all": 1 if args.all else None,
        "limit": limit if limit and limit > 0 else None,
        "filters": json.dumps(filters) if filters else None,
    }
    containers = make_client(args).get_json("/containers/json", query)
    rows = [_ps_row(c, not args.no_trunc) for c in containers]
    columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    print_rows(rows, args.quiet, args.format, PS_HEADERS, columns)
    return 0


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def log_timestamp(text: str, now: float | None = None) -> str:
    """``--since``/``--until`` as docker sends them (unix seconds, nanoseconds as a fraction):
    from a Go duration (``10m``, ``1h30m``: that long ago), unix seconds, or an RFC 3339 date."""
    now = time.time() if now is None else now
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return text
    if _DURATION.fullmatch(text) or re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(text))
        moment = now - seconds
    else:
        from datetime import datetime

        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"invalid value for time: {text!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        moment = parsed.timestamp()
    whole = math.floor(moment)
    return f"{whole}.{round((moment - whole) * 1e9):09d}"


def cmd_logs(args: argparse.Namespace) -> int:
    from dockyard.client import copy_raw, demultiplex

    client = make_client(args)
    # The container's TTY flag decides the stream's format (framed or raw), as for docker.
    container = client.get_json(container_path(args.container, "/json"))
    query = {
        "stdout": 1,
        "stderr": 1,
        "follow": 1 if args.follow else None,
        "tail": args.tail,
        "timestamps": 1 if args.timestamps else None,
        "since": log_timestamp(args.since) if args.since else None,
        "until": log_timestamp(args.until) if args.until else None,
    }
    response = client.request(
        "GET", container_path(container["Id"], "/logs"), query, streaming=args.follow
    )
    if (container.get("Config") or {}).get("Tty"):
        copy_raw(response.read1, sys.stdout.buffer)
    else:
        demultiplex(response.read, sys.stdout.buffer, sys.stderr.buffer)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    client.get_json(container_path(args.container, "/json"))  # "No such container" first
    if args.tty and args.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    config = {
        "User": args.user or "",
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": args.interactive and not args.detach,
        "AttachStderr": not args.detach,
        "AttachStdout": not args.detach,
        "Detach": args.detach,
        "DetachKeys": args.detach_keys or "",
        "Env": _env_entries(args.env) or None,
        "WorkingDir": args.workdir or "",
        "Cmd": [args.command_name, *args.arguments],
    }
    created = client.call_json("POST", container_path(args.container, "/exec"), body=config)
    exec_id = created.get("Id") if created else ""
    if not exec_id:
        raise UsageError("exec ID empty")
    start = {"Detach": args.detach, "Tty": args.tty}
    if args.detach:
        client.call_json("POST", f"/exec/{exec_id}/start", body=start)
        return 0
    stream = client.hijack(f"/exec/{exec_id}/start", body=start)
    stdin_fd = stdin_fileno() if args.interactive else None
    raw_fd = stdin_fd if args.tty and stdin_fd is not None and os.isatty(stdin_fd) else None
    session = AttachSession(stream, args.tty, stdin_fd, detach_keys)
    resize_path = f"/exec/{exec_id}/resize"
    # Signals are not forwarded for exec (docker neither): only the TTY follows the window.
    proxy = SignalProxy(
        False,
        lambda name: None,
        (lambda: resize_tty(client, resize_path, False)) if args.tty else None,
    )
    try:
        with RawTerminal(raw_fd), proxy:
            session.start_input()
            if args.tty:
                import threading

                # As docker: sent alongside start, retried until the process has its pty.
                threading.Thread(target=resize_tty, args=(client, resize_path), daemon=True).start()
            try:
                session.copy_output()
            finally:
                session.close()
    except (StdCopyError, APIError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return 1
    if session.detached:
        return 0
    status: int = client.get_json(f"/exec/{exec_id}/json").get("ExitCode") or 0
    return status


def cmd_attach(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    container = client.get_json(container_path(args.container, "/json"))
    state = container.get("State") or {}
    if not state.get("Running"):
        raise UsageError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise UsageError("You cannot attach to a paused container, unpause it first")
    config = dict(container.get("Config") or {})
    config["AttachStdin"] = bool(config.get("OpenStdin")) and not args.no_stdin
    config["AttachStdout"] = config["AttachStderr"] = True
    if config["Tty"] and config["AttachStdin"] and not sys.stdin.isatty():
        raise UsageError("the input device is not a TTY")
    try:
        return _attached_run(
            client,
            container["Id"],
            config,
            "not-running",
            detach_keys,
            args.sig_proxy,
            False,
            detach_spec=args.detach_keys or "",
        )
    except (RunError, APIError, StdCopyError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else 1


def cmd_top(args: argparse.Namespace) -> int:
    query = {"ps_args": " ".join(args.ps_args) if args.ps_args else None}
    top = make_client(args).get_json(container_path(args.container, "/top"), query)
    # docker top's tabwriter has a minimum cell width of 20.
    print_table(top.get("Titles") or [], top.get("Processes") or [], 20)
    return 0


STATS_HEADERS = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
]


def _stats_row(stats: dict[str, Any]) -> list[str]:
    """One ``docker stats`` row, with its CPU and memory arithmetic."""
    cpu, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        previous.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or 1
    cpu_percent = cpu_delta / system_delta * online * 100 if system_delta > 0 else 0.0
    memory = stats.get("memory_stats") or {}
    usage, limit = memory.get("usage", 0) or 0, memory.get("limit", 0) or 0
    memory_percent = usage / limit * 100 if limit else 0.0
    networks = stats.get("networks") or {}
    received = sum(n.get("rx_bytes", 0) for n in networks.values())
    sent = sum(n.get("tx_bytes", 0) for n in networks.values())
    block_read = block_write = 0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or ():
        if entry.get("op", "").lower() == "read":
            block_read += entry.get("value", 0)
        elif entry.get("op", "").lower() == "write":
            block_write += entry.get("value", 0)
    pids = (stats.get("pids_stats") or {}).get("current", 0)
    return [
        stats.get("id", "")[:12],
        stats.get("name", "").removeprefix("/"),
        f"{cpu_percent:.2f}%",
        f"{human_size(usage)} / {human_size(limit)}",
        f"{memory_percent:.2f}%",
        f"{human_size_decimal(received)} / {human_size_decimal(sent)}",
        f"{human_size_decimal(block_read)} / {human_size_decimal(block_write)}",
        str(pids),
    ]


def cmd_stats(args: argparse.Namespace) -> int:
    client = make_client(args)
    names = args.containers
    if not names:
        running = client.get_json("/containers/json", {"all": 1 if args.all else None})
        names = [c["Id"] for c in running]
    while True:
        rows = [
            _stats_row(client.get_json(container_path(n, "/stats"), {"stream": 0})) for n in names
        ]
        if not args.no_stream and sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # redraw in place, as docker does on a terminal
        print_table(STATS_HEADERS, rows, DOCKER_MIN_WIDTH)
        if args.no_stream:
            return 0
        sys.stdout.flush()
        time.sleep(1)


def cmd_container_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    if not args.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    report = make_client(args).call_json(
        "POST", "/containers/prune", {"filters": json.dumps(filters) if filters else None}
    )
    deleted = report.get("ContainersDeleted") or []
    print_prune_report("Deleted Containers:", deleted, report.get("SpaceReclaimed", 0))
    return 0


def _run_arguments(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """``run``/``create`` flags. ``-h`` is ``--hostname`` as in docker, so help is ``--help``;
    options end at the image: what follows is the container's command, flags included."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    if run:
        parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
        parser.add_argument(
            "--sig-proxy",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="forward signals to the container (--sig-proxy=false to not)",
        )
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("--name", help="the container's name")
    parser.add_argument("-e", "--env", action="append", help="KEY=VALUE, or KEY to pass ours")
    parser.add_argument(
        "--env-file", action="append", help="a file of KEY=VALUE (or KEY) lines, one a variable"
    )
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-u", "--user", help="USER[:GROUP], names or ids")
    parser.add_argument("-v", "--volume", action="append", help="/host:/ctr[:ro] or NAME:/ctr")
    parser.add_argument("--tmpfs", action="append", help="a tmpfs at PATH[:OPTIONS]")
    parser.add_argument(
        "--volumes-from", action="append", help="CONTAINER[:ro|rw]: mount its volumes too"
    )
    parser.add_argument("--entrypoint", help="override the image's entrypoint")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("--restart", help="no, on-failure[:N], always, unless-stopped")
    parser.add_argument("-m", "--memory", help="memory limit: 512m, 1g, …")
    parser.add_argument("--cpus", help="number of CPUs (1.5)")
    parser.add_argument("--pids-limit", type=int, help="maximum number of processes")
    parser.add_argument("--privileged", action="store_true", help="all capabilities and devices")
    parser.add_argument("--cap-add", action="append", help="add a Linux capability")
    parser.add_argument("--cap-drop", action="append", help="drop a Linux capability")
    parser.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    parser.add_argument(
        "--userns", help="host: opt out of the daemon's userns-remap (the host's user namespace)"
    )
    parser.add_argument(
        "--security-opt",
        action="append",
        help="no-new-privileges[=true], systempaths=unconfined, seccomp=unconfined, …",
    )
    parser.add_argument("-l", "--label", action="append", help="KEY=VALUE metadata")
    health_arguments(parser)
    parser.add_argument("--log-driver", default="", help="json-file, local, none, …")
    parser.add_argument("--log-opt", action="append", help="KEY=VALUE log driver option")
    container_network_arguments(parser)
    process_arguments(parser)
    parser.add_argument(
        "--pull",
        type=pull_policy,
        default="missing",
        help="pull the image: always, missing (default) or never",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no pull progress")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    _run_arguments(parser, run=False)


def _containers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    _containers_argument(parser)


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", "--timeout", type=int, help="seconds before SIGKILL")
    parser.add_argument("-s", "--signal", help="signal to stop with")
    _containers_argument(parser)


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", help="signal name or number (default KILL)")
    _containers_argument(parser)


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="remove a running one too")
    parser.add_argument("-v", "--volumes", action="store_true", help="and its anonymous volumes")
    _containers_argument(parser)


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep following the output")
    parser.add_argument("-n", "--tail", default="all", help="lines from the end (default all)")
    parser.add_argument("--since", help="since a time: 2026-11-29T07:00:00Z, 10m, unix seconds")
    parser.add_argument("--until", help="until a time, same forms as --since")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    parser.add_argument("container", metavar="CONTAINER")


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    parser.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("-n", "--last", type=int, default=-1, help="the n last created")
    parser.add_argument("-l", "--latest", action="store_true", help="the last created")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")


def _exec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("-e", "--env", action="append", help="KEY=VALUE")
    parser.add_argument("-u", "--user", help="USER[:GROUP]")
    parser.add_argument("-w", "--workdir", help="working directory")
    parser.add_argument("--privileged", action="store_true", help="all capabilities")
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command_name", metavar="COMMAND")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARG")


def _attach_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    parser.add_argument(
        "--sig-proxy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="forward signals to the container",
    )
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("container", metavar="CONTAINER")


def _top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS_OPTIONS")


def _rename_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="CONTAINER")
    parser.add_argument("new", metavar="NEW_NAME")


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--memory", help="memory limit: 512m, 1g, …")
    parser.add_argument("--cpus", help="number of CPUs (1.5)")
    parser.add_argument("--pids-limit", type=int, help="maximum number of processes")
    parser.add_argument("--restart", help="no, on-failure[:N], always, unless-stopped")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    parser.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def _container_prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


# (top-level command or None, `container` subcommand and its aliases, help, arguments, handler)
CONTAINER_COMMANDS: list[CommandSpec] = [
    ("run", ("run",), "run a command in a new container", _run_arguments, cmd_run),
    ("create", ("create",), "create a container", _create_arguments, cmd_create),
    ("start", ("start",), "start containers", _start_arguments, cmd_start),
    ("stop", ("stop",), "stop containers", _stop_arguments, cmd_stop),
    ("restart", ("restart",), "restart containers", _stop_arguments, cmd_restart),
    ("kill", ("kill",), "send containers a signal", _kill_arguments, cmd_kill),
    ("pause", ("pause",), "freeze containers' processes", _containers_argument, cmd_pause),
    ("unpause", ("unpause",), "thaw containers' processes", _containers_argument, cmd_unpause),
    ("rm", ("rm", "remove"), "remove containers", _rm_arguments, cmd_rm),
    ("wait", ("wait",), "wait for containers to stop", _containers_argument, cmd_wait),
    ("logs", ("logs",), "show a container's output", _logs_arguments, cmd_logs),
    ("ps", ("ls", "ps", "list"), "list containers", _ps_arguments, cmd_ps),
    (
        None,
        ("inspect",),
        "show containers' details as JSON",
        lambda parser: inspect_arguments(parser, "container"),
        cmd_inspect,
    ),
    ("exec", ("exec",), "run a command in a running container", _exec_arguments, cmd_exec),
    ("top", ("top",), "list a container's processes", _top_arguments, cmd_top),
    ("port", ("port",), "list a container's published ports", port_arguments, cmd_port),
    ("rename", ("rename",), "rename a container", _rename_arguments, cmd_rename),
    ("attach", ("attach",), "attach to a running container", _attach_arguments, cmd_attach),
    ("update", ("update",), "change running containers' limits", _update_arguments, cmd_update),
    ("stats", ("stats",), "containers' resource usage", _stats_arguments, cmd_stats),
    (
        None,
        ("prune",),
        "remove stopped containers",
        _container_prune_arguments,
        cmd_container_prune,
    ),
    *FILESYSTEM_COMMANDS,
]

#: Commands whose options end at the first positional (``run IMAGE ls -l``): ``-h`` there
#: is a docker flag, not help.
_NO_HELP_FLAG = {"run", "create"}


def add_parsers(commands: Any, only: str | None = None) -> None:
    """Container commands top-level and under ``container`` (see ``add_command_group``)."""
    add_command_group(
        commands, "container", "manage containers", CONTAINER_COMMANDS, _NO_HELP_FLAG, only
    )
