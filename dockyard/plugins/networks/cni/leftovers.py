"""What the reference CNI plugins leave on the host after their last DEL, and removing it.

The portmap and firewall plugins (containernetworking-plugins, iptables backend) make shared
chains on their first ADD and never remove them: ``CNI-HOSTPORT-DNAT``, ``-SETMARK`` and
``-MASQ`` in ``nat`` with jumps from ``PREROUTING``, ``OUTPUT`` and ``POSTROUTING``;
``CNI-FORWARD`` and ``CNI-ADMIN`` in ``filter`` with a jump from ``FORWARD``. With iptables over
nftables (Debian's default) the first rule also makes the ``ip nat``/``ip filter`` tables and
their base chains, and portmap's IPv6 half an empty ``ip6 nat`` table.

:func:`remove_idle_chains` removes those shared chains, but only while they are idle: they hold
nothing but the plugins' own fixed rules (a mark, a masquerade, a jump to one another); any
container's rule (another runtime's, podman's) or an administrator's rule in ``CNI-ADMIN``
keeps them. :func:`remove_made_tables` then removes the iptables-nft tables and base chains
that are empty and were not there before (:func:`iptables_nft_chains`, recorded when the
driver's first network was made), so that the host's ruleset is what it was.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence

#: The shared chains of the reference plugins, per iptables table.
SHARED_CHAINS = {
    "nat": ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"),
    "filter": ("CNI-FORWARD", "CNI-ADMIN"),
}
#: Fixed targets the plugins put in their shared chains, which no container owns.
FIXED_TARGETS = {"CNI-HOSTPORT-SETMARK": ("MARK",), "CNI-HOSTPORT-MASQ": ("MASQUERADE",)}
#: The tables iptables-nft makes in nftables, per family.
IPTABLES_TABLES = ("nat", "filter", "mangle", "raw")
IPTABLES_FAMILIES = {"ip": "iptables", "ip6": "ip6tables"}

Chain = tuple[str, str, str]  # family, table, chain ("" for the table itself)


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def _target(words: Sequence[str]) -> str:
    for flag in ("-j", "--jump", "-g", "--goto"):
        if flag in words and words.index(flag) + 1 < len(words):
            return words[words.index(flag) + 1]
    return ""


def _rules(tool: str, table: str) -> list[list[str]]:
    """``tool -t table -S`` as words, the appended rules only (``-A CHAIN ...``)."""
    listed = _run(tool, "-w", "-t", table, "-S")
    return [shlex.split(line) for line in listed.splitlines() if line.startswith("-A ")]


def remove_idle_chains() -> list[str]:
    """Remove the plugins' shared chains where they are idle; returns what was removed."""
    removed = []
    for tool in IPTABLES_FAMILIES.values():
        if not shutil.which(tool):
            continue
        for table, group in SHARED_CHAINS.items():
            rules = _rules(tool, table)
            present = {words[1] for words in rules} | _declared(tool, table)
            mine = [chain for chain in group if chain in present]
            if not mine or not _idle(rules, group):
                continue
            for words in rules:
                if words[1] not in group and _target(words) in group:
                    _run(tool, "-w", "-t", table, "-D", *words[1:])
            for chain in mine:
                _run(tool, "-w", "-t", table, "-F", chain)
            for chain in mine:
                _run(tool, "-w", "-t", table, "-X", chain)
                removed.append(f"{tool} {table} {chain}")
    return removed


def _declared(tool: str, table: str) -> set[str]:
    listed = _run(tool, "-w", "-t", table, "-S")
    return {line.split()[1] for line in listed.splitlines() if line.startswith("-N ")}


def _idle(rules: Iterable[list[str]], group: Sequence[str]) -> bool:
    for words in rules:
        chain = words[1]
        if chain not in group:
            continue
        target = _target(words)
        if target not in group and target not in FIXED_TARGETS.get(chain, ()):
            return False  # a container's rule, or an administrator's
    return True


def iptables_nft_chains() -> list[Chain]:
    """The tables and chains of iptables-nft's tables that exist in nftables now."""
    if not shutil.which("nft"):
        return []
    listed = _run("nft", "-j", "list", "chains")
    chains: list[Chain] = []
    for entry in _nft_objects(listed, "chain"):
        family, table = entry.get("family"), entry.get("table")
        if family in IPTABLES_FAMILIES and table in IPTABLES_TABLES:
            chains.append((family, table, entry.get("name", "")))
    for entry in _nft_objects(_run("nft", "-j", "list", "tables"), "table"):
        if entry.get("family") in IPTABLES_FAMILIES and entry.get("name") in IPTABLES_TABLES:
            chains.append((entry["family"], entry["name"], ""))
    return sorted(set(chains))


def _nft_objects(listed: str, kind: str) -> list[dict[str, str]]:
    try:
        entries = json.loads(listed).get("nftables", []) if listed else []
    except ValueError:
        return []
    return [entry[kind] for entry in entries if isinstance(entry, dict) and kind in entry]


def remove_made_tables(before: Sequence[Chain]) -> list[str]:
    """Remove iptables-nft's empty base chains and tables that are not in ``before``."""
    kept = set(before)
    removed = []
    for family, table, chain in iptables_nft_chains():
        if not chain or (family, table, chain) in kept:
            continue
        listed = _run("nft", "-j", "list", "chain", family, table, chain)
        if _nft_objects(listed, "rule"):
            continue
        with contextlib.suppress(OSError):
            if subprocess.run(["nft", "delete", "chain", family, table, chain],
                              capture_output=True, check=False).returncode == 0:  # fmt: skip
                removed.append(f"{family} {table} {chain}")
    for family, table, chain in iptables_nft_chains():
        if chain or (family, table, "") in kept:
            continue
        if any(c[:2] == (family, table) and c[2] for c in iptables_nft_chains()):
            continue
        if subprocess.run(["nft", "delete", "table", family, table],
                          capture_output=True, check=False).returncode == 0:  # fmt: skip
            removed.append(f"{family} {table}")
    return removed
