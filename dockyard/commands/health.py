"""``run``/``create``'s health-check flags, turned into ``Config.Healthcheck`` as the docker
CLI does it: ``--health-cmd`` is a ``CMD-SHELL`` test, durations are Go durations in
nanoseconds, and ``--no-healthcheck`` is ``{"Test": ["NONE"]}``."""

from __future__ import annotations

import argparse
import re
from typing import Any

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip
_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def go_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration``: ``1s``, ``1.5m``, ``1h30m``, ``-2s``, ``0``."""
    invalid = ValueError(f'time: invalid duration "{text}"')
    sign, rest = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total, position = 0.0, 0
    while position < len(rest):
        part = _PART.match(rest, position)
        if part is None or not (part.group(1) or part.group(2)):
            raise invalid
        whole, fraction, unit = part.group(1) or "0", part.group(2) or "", part.group(3)
        total += (int(whole) + (int(fraction) / 10 ** len(fraction) if fraction else 0)) * _UNITS[
            unit
        ]
        position = part.end()
    return sign * round(total)


def health_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--health-cmd", default="", help="command to run to check health")
    for name, what in (
        ("interval", "time between running the check"),
        ("timeout", "maximum time to allow one check to run"),
        ("start-period", "start period for the container to initialize"),
    ):
        parser.add_argument(f"--health-{name}", default="0s", help=f"{what} (ms|s|m|h)")
    parser.add_argument("--health-retries", type=int, default=0,
                        help="consecutive failures needed to report unhealthy")  # fmt: skip
    parser.add_argument("--no-healthcheck", action="store_true",
                        help="disable any container-specified HEALTHCHECK")  # fmt: skip


def healthcheck_field(args: argparse.Namespace) -> dict[str, Any] | None:
    """``Config.Healthcheck`` for the flags; ValueError with the docker CLI's words."""
    durations = {}
    for name in ("interval", "timeout", "start-period"):
        text = getattr(args, f"health_{name.replace('-', '_')}")
        try:
            durations[name] = go_duration_ns(text)
        except ValueError as exc:
            flag = f"--health-{name}"
            raise ValueError(f'invalid argument "{text}" for "{flag}" flag: {exc}') from None
    given = bool(args.health_cmd) or any(durations.values()) or args.health_retries != 0
    if args.no_healthcheck:
        if given:
            raise ValueError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    checked = ("interval", "timeout", "retries", "start-period")  # the docker CLI's order
    for name, value in ((n, durations.get(n, args.health_retries)) for n in checked):
        if value < 0:
            raise ValueError(f"--health-{name} cannot be negative")
    return {
        "Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else None,
        "Interval": durations["interval"],
        "Timeout": durations["timeout"],
        "StartPeriod": durations["start-period"],
        "Retries": args.health_retries,
    }
