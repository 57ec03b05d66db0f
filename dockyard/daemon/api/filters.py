"""What list and prune filters share: which keys a route takes, labels, ``until``, regular
expressions, ports; with dockerd's answers for the ones it refuses."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.api.params import parse_bool, parse_timestamp


def check_filters(filters: Mapping[str, list[str]], accepted: Iterable[str]) -> None:
    """Refuse a filter the route does not know, as dockerd words it."""
    known = set(accepted)
    for key in filters:
        if key not in known:
            raise InvalidParameter(f"Invalid filter '{key}'")


def label_matches(labels: Mapping[str, str], condition: str) -> bool:
    """``key`` (the label is set) or ``key=value`` (set to that value)."""
    label, sep, value = condition.partition("=")
    return label in labels and (not sep or labels[label] == value)


def labels_match(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    """Every ``label`` condition holds and no ``label!`` one does."""
    return all(label_matches(labels, c) for c in filters.get("label", [])) and not any(
        label_matches(labels, c) for c in filters.get("label!", [])
    )


def bool_filter(filters: Mapping[str, list[str]], key: str) -> bool | None:
    """A true/false filter's value (``None`` when absent); anything else is refused."""
    values = filters.get(key)
    if not values:
        return None
    if any(value.lower() not in ("true", "false", "1", "0") for value in values):
        raise InvalidParameter(f"Invalid filter '{key}=[{' '.join(values)}]'")
    return parse_bool(values[-1])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def until_timestamp(value: str) -> float:
    """``until`` as docker takes it: a Go duration ago (``24h``, ``1h30m``) or a timestamp
    (Unix seconds, RFC 3339, a date); Unix seconds returned."""
    text = value.strip()
    if text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in _DURATION.findall(text))
        return time.time() - seconds
    try:
        stamp = parse_timestamp(text)
    except InvalidParameter:
        stamp = None
    if stamp is None:
        raise InvalidParameter(f'failed to parse value as time or duration: "{value}"')
    return stamp / 1e9


def created_before_all(created: float, filters: Mapping[str, list[str]]) -> bool:
    """The ``until`` filters hold for something created at ``created`` (Unix seconds)."""
    return all(created < until_timestamp(value) for value in filters.get("until", []))


def regex_matches(pattern: str, text: str) -> bool:
    """dockerd's filter ``Match``: the pattern is a regular expression searched in the text;
    one that does not compile matches nothing (dockerd does not complain either)."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def port_keys(values: Iterable[str]) -> set[str]:
    """``80``, ``80/udp`` or ``8000-8002/tcp`` as the ``port/proto`` keys they stand for."""
    keys: set[str] = set()
    for value in values:
        spec, _, proto = value.partition("/")
        low, _, high = spec.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise InvalidParameter(f"invalid port filter {value!r}") from None
        if not 0 < first <= last <= 65535:
            raise InvalidParameter(f"invalid port filter {value!r}")
        keys.update(f"{port}/{proto or 'tcp'}" for port in range(first, last + 1))
    return keys
