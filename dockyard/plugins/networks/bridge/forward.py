"""Accept rules in the host's iptables ``FORWARD`` chain, where its policy would drop our traffic.

A forwarded packet passes every base chain on the forward hook, and a drop in any of them is
final: an ``accept`` in the driver's own nftables table cannot undo the ``DROP`` policy that
dockerd (and many firewalls) give iptables' ``filter FORWARD``. Containers on one bridge talk
through that hook too when ``br_netfilter`` hands bridged frames to iptables. So where a
``FORWARD`` policy is ``DROP``, the driver adds, like dockerd's forward rules:

* a chain of its own, ``<instance>-FORWARD`` in table ``filter``, and one jump to it appended
  to ``FORWARD`` (after the administrator's own rules, which keep their say);
* per network, with the comment ``<instance> net:<id>``: what leaves its bridge; what enters
  it as an answer (conntrack ``RELATED,ESTABLISHED``) or to a published port (``DNAT``). An
  internal network gets only its bridge-to-bridge rule. Isolation stays in the nft table,
  whose drops still win.

Both iptables backends are looked at when both are installed (``iptables-nft`` and
``iptables-legacy`` each have a ``FORWARD`` chain the kernel runs). Nothing is added where no
policy drops: a host without an iptables ``filter`` table keeps not having one. The chain and
its jump go with the driver's last network.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence

import attrs

from dockyard.plugins.networks.bridge.firewall import FirewallError

#: The split commands first: both backends' chains are run by the kernel when both exist.
BACKENDS = ("iptables-nft", "iptables-legacy")


@attrs.frozen
class Bridge:
    """What the accept rules of one network need to know."""

    network_id: str
    interface: str
    internal: bool


def installed_backends() -> list[str]:
    found = [name for name in BACKENDS if shutil.which(name)]
    if not found and shutil.which("iptables"):
        found = ["iptables"]
    return found


class ForwardAccepts:
    """The accept rules of one driver instance, in every iptables backend that needs them."""

    def __init__(self, instance: str, backends: Sequence[str] | None = None) -> None:
        self.instance = instance
        # iptables chain names have at most 28 characters; an instance name has at most 10
        # (``dockyard`` or ``dy`` and 8 of a hash) unless configured longer.
        self.chain = f"{instance[:19]}-FORWARD"
        self.backends = list(installed_backends() if backends is None else backends)

    def _iptables(self, backend: str, *args: str) -> subprocess.CompletedProcess[str]:
        # -w: wait for the xtables lock another program (dockerd) may hold, not fail.
        return subprocess.run(
            [backend, "-w", "-t", "filter", *args], capture_output=True, text=True, check=False
        )

    def _checked(self, backend: str, *args: str) -> None:
        done = self._iptables(backend, *args)
        if done.returncode != 0:
            raise FirewallError(f"{backend} {' '.join(args)}: {done.stderr.strip()}")

    def _has_chain(self, backend: str) -> bool:
        return self._iptables(backend, "-S", self.chain).returncode == 0

    def _forward_state(self, backend: str) -> tuple[bool, bool]:
        """Whether ``FORWARD`` jumps to this instance's chain, and whether its policy drops."""
        done = self._iptables(backend, "-S", "FORWARD")
        lines = done.stdout.splitlines() if done.returncode == 0 else []
        return f"-A FORWARD -j {self.chain}" in lines, "-P FORWARD DROP" in lines

    def _rules(self, bridge: Bridge) -> list[list[str]]:
        mark = ["-m", "comment", "--comment", f"{self.instance} net:{bridge.network_id}"]
        inside = ["-i", bridge.interface, "-o", bridge.interface]
        if bridge.internal:
            return [[*inside, *mark, "-j", "ACCEPT"]]
        into = ["-o", bridge.interface, "-m", "conntrack", "--ctstate"]
        return [
            ["-i", bridge.interface, *mark, "-j", "ACCEPT"],
            [*into, "RELATED,ESTABLISHED", *mark, "-j", "ACCEPT"],
            [*into, "DNAT", *mark, "-j", "ACCEPT"],
        ]

    def _install(self, backend: str) -> None:
        if not self._has_chain(backend):  # a chain without its jump: a start cut short
            self._checked(backend, "-N", self.chain)
        self._checked(backend, "-A", "FORWARD", "-j", self.chain)

    def _add(self, backend: str, bridge: Bridge) -> None:
        for rule in self._rules(bridge):
            if self._iptables(backend, "-C", self.chain, *rule).returncode != 0:
                self._checked(backend, "-A", self.chain, *rule)

    def ensure(self, bridges: Iterable[Bridge], recheck: bool = True) -> None:
        """Accept the traffic of ``bridges`` wherever a ``FORWARD`` policy drops it, or this
        instance's chain is in place already; elsewhere add nothing.

        Without ``recheck``, a backend whose chain is in place is left as it is (a connect:
        its network's rules came with the chain or the network; one read per backend).
        """
        bridges = list(bridges)
        for backend in self.backends:
            jumped, drops = self._forward_state(backend)
            if not jumped:
                if not (drops and bridges):
                    continue
                self._install(backend)
            elif not recheck:
                continue
            for bridge in bridges:
                self._add(backend, bridge)

    def remove(self, bridge: Bridge) -> None:
        """Remove the rules of one network (others remain)."""
        for backend in self.backends:
            if self._has_chain(backend):
                for rule in self._rules(bridge):
                    self._iptables(backend, "-D", self.chain, *rule)

    def remove_all(self) -> None:
        """Remove the chain and its jump: the driver's last network is gone."""
        for backend in self.backends:
            if not self._has_chain(backend):
                continue
            while self._iptables(backend, "-D", "FORWARD", "-j", self.chain).returncode == 0:
                pass  # a jump added twice (two daemons racing at start) goes too
            self._checked(backend, "-F", self.chain)
            self._checked(backend, "-X", self.chain)

    def replace_all(self, bridges: Iterable[Bridge]) -> None:
        """Make the chain hold exactly the rules of ``bridges`` (after a restart): the new ones
        are added before the stale ones go, so no moment drops the surviving networks'."""
        bridges = list(bridges)
        if not bridges:
            self.remove_all()
            return
        self.ensure(bridges)
        wanted = {f"{self.instance} net:{bridge.network_id}" for bridge in bridges}
        for backend in self.backends:
            listing = self._iptables(backend, "-S", self.chain)
            for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
                words = shlex.split(line)
                if words[:2] != ["-A", self.chain] or "--comment" not in words:
                    continue
                if words[words.index("--comment") + 1] not in wanted:
                    self._iptables(backend, "-D", *words[1:])
