"""The bridge driver's firewall: one nftables table of its own, ``table ip <instance>``.

Written with ``nft -f -`` (one script is one kernel transaction: all of a change or none of it)
and read with ``nft -j`` (JSON, so rule handles and comments are parsed, not scraped). The nft
command is the stable interface of nftables; its Python binding (libnftables' ``nftables``
module) is a Debian package outside any virtualenv. Every rule carries a comment naming its
owner (``net:<id>`` for a network's, ``port:<endpoint id> ...`` for a published port's), which
is how the driver finds its rules again without keeping state. Nothing here touches another
table: the driver's whole ruleset goes with ``delete table``.

Chains (the priorities are nftables' standard ones, as iptables' nat and filter tables use):

* ``prerouting``/``output`` (nat): packets for a local address jump to ``ports``;
* ``ports``: one DNAT rule per published port;
* ``postrouting`` (nat): masquerade of each network's outbound traffic, of 127.0.0.0/8 sent
  to a bridge (reaching a published port on 127.0.0.1) and of a container reaching itself
  through its published port (hairpin);
* ``forward`` (filter): isolation between the driver's bridges, and of internal networks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable

import attrs

from dockyard.core.errors import DockyardError, DriverUnavailable

NFT = "nft"


class FirewallError(DockyardError):
    """nft refused a script: a bug of ours or a kernel without nftables."""


@attrs.frozen
class Rule:
    chain: str
    handle: int
    comment: str


def _quote(text: str) -> str:
    return json.dumps(text)  # a double-quoted string nft reads back as written


def check_available() -> None:
    if shutil.which(NFT) is None:
        raise DriverUnavailable("the nft command (Debian's nftables) is not installed")


class Firewall:
    """The rules of one table, ``ip <table>``."""

    def __init__(self, table: str) -> None:
        self.table = table

    def _run(self, script: str) -> None:
        done = subprocess.run(
            [NFT, "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise FirewallError(f"nft refused the driver's rules: {done.stderr.strip()}")

    def base_chains(self) -> list[str]:
        """Commands making the table and its chains; ``add`` keeps what already exists."""
        t = f"ip {self.table}"
        nat, accept = "type nat hook", "policy accept;"
        return [
            f"add table {t}",
            f"add set {t} bridges {{ type ifname; }}",
            f"add chain {t} ports",
            f"add chain {t} prerouting {{ {nat} prerouting priority dstnat; {accept} }}",
            f"add chain {t} output {{ {nat} output priority -100; {accept} }}",
            f"add chain {t} postrouting {{ {nat} postrouting priority srcnat; {accept} }}",
            f"add chain {t} forward {{ type filter hook forward priority filter; {accept} }}",
        ]

    def _jumps(self) -> list[str]:
        t = f"ip {self.table}"
        return [
            f"add rule {t} prerouting fib daddr type local jump ports",
            f"add rule {t} output fib daddr type local jump ports",
        ]

    def network_rules(
        self, network_id: str, bridge: str, subnet: str, internal: bool, masquerade: bool = True
    ) -> list[str]:
        t = f"ip {self.table}"
        mark = f"comment {_quote('net:' + network_id)}"
        br = _quote(bridge)
        rules = [
            f"add element {t} bridges {{ {br} }}",
            # Another of our bridges is another network: no routing between them.
            f"add rule {t} forward iifname {br} oifname @bridges oifname != {br} drop {mark}",
            # A published port reached from 127.0.0.1 (route_localnet lets it leave lo).
            f"add rule {t} postrouting ip saddr 127.0.0.0/8 oifname {br} masquerade {mark}",
            # A container reaching a published port of its own network through a host address:
            # the answer must come back through the host, not straight over the bridge.
            f"add rule {t} postrouting iifname {br} oifname {br} ct status dnat masquerade {mark}",
        ]
        if internal:
            rules += [
                f"add rule {t} forward iifname {br} oifname != {br} drop {mark}",
                f"add rule {t} forward oifname {br} iifname != {br} drop {mark}",
            ]
        elif masquerade:
            rules.append(
                f"add rule {t} postrouting ip saddr {subnet} oifname != {br} masquerade {mark}"
            )
        return rules

    def port_rules(
        self, endpoint_id: str, container_ip: str, protocol: str, container_port: int,
        host_ip: str, host_port: int,
    ) -> list[str]:  # fmt: skip
        t = f"ip {self.table}"
        mark = f"comment {_quote(port_comment(endpoint_id, protocol, host_ip, host_port))}"
        only = f"ip daddr {host_ip} " if host_ip else ""
        return [
            f"add rule {t} ports {only}{protocol} dport {host_port} "
            f"dnat to {container_ip}:{container_port} {mark}",
            # A container reaching its own published port: answer through the bridge.
            f"add rule {t} postrouting ip saddr {container_ip} ip daddr {container_ip} "
            f"{protocol} dport {container_port} masquerade {mark}",
        ]

    def apply(self, commands: Iterable[str]) -> None:
        """Run ``commands`` after making sure the table and chains exist, in one transaction."""
        commands = list(commands)
        if not commands:
            return
        prelude = self.base_chains()
        if not self.exists():
            prelude += self._jumps()
        self._run("\n".join(prelude + commands) + "\n")

    def exists(self) -> bool:
        done = subprocess.run(
            [NFT, "list", "table", "ip", self.table], capture_output=True, text=True, check=False
        )
        return done.returncode == 0

    def rules(self) -> list[Rule]:
        """Every commented rule of the table (none when the table does not exist)."""
        done = subprocess.run(
            [NFT, "-j", "list", "table", "ip", self.table],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return []
        found = []
        for item in json.loads(done.stdout).get("nftables", []):
            rule = item.get("rule")
            if rule and rule.get("comment"):
                found.append(Rule(rule["chain"], int(rule["handle"]), rule["comment"]))
        return found

    def delete_rules(self, rules: Iterable[Rule], bridges: Iterable[str] = ()) -> None:
        t = f"ip {self.table}"
        commands = [f"delete rule {t} {rule.chain} handle {rule.handle}" for rule in rules]
        commands += [f"delete element {t} bridges {{ {_quote(b)} }}" for b in bridges]
        if commands and self.exists():
            self._run("\n".join(commands) + "\n")

    def delete_table(self) -> None:
        if self.exists():
            self._run(f"delete table ip {self.table}\n")

    def replace_all(self, commands: Iterable[str]) -> None:
        """Swap the whole table for one made of ``commands``, atomically (for restore)."""
        script = [f"add table ip {self.table}", f"delete table ip {self.table}"]
        script += self.base_chains() + self._jumps() + list(commands)
        self._run("\n".join(script) + "\n")


def port_comment(endpoint_id: str, protocol: str, host_ip: str, host_port: int) -> str:
    return f"port:{endpoint_id} {protocol} {host_ip or '0.0.0.0'}:{host_port}"


@attrs.frozen
class PublishedPort:
    """A published port as its rule's comment tells it."""

    endpoint_id: str
    protocol: str
    host_ip: str
    host_port: int


def parse_port_comment(comment: str) -> PublishedPort | None:
    if not comment.startswith("port:"):
        return None
    owner, protocol, address = comment[len("port:") :].split(" ")
    host_ip, _, port = address.rpartition(":")
    return PublishedPort(owner, protocol, "" if host_ip == "0.0.0.0" else host_ip, int(port))
