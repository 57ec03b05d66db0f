"""Network drivers ``null`` (docker's ``none`` network) and ``host``: nothing to plumb, so
nothing to make or undo.

* ``none`` is docker's ``--network none``: the container keeps its own network namespace with
  loopback only. The namespace file the core made already has ``lo`` up
  (:func:`dockyard.linux.netns.create`).
* ``host`` is docker's ``--network host``: the container shares the host's namespace. The
  runtime runs it there, so the core makes no namespace file for it and ``connect`` does not
  look at ``EndpointSpec.netns``.

Neither can publish a port (nothing reaches a loopback-only namespace; on the host's network a
server is on the host's ports already): ``publish`` publishes nothing and says so by returning
no binding, as docker discards published ports on these networks. Both are stateless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import (
    EndpointSpec,
    EndpointState,
    NetworkSpec,
    NetworkState,
    PortBinding,
)
from dockyard.linux import netns


class _Unplumbed:
    """What ``none`` and ``host`` share: checks of the input, and no kernel object at all."""

    name = ""
    #: Whether the container has a namespace of its own, which must exist to connect.
    own_namespace = True
    #: What a network of this driver is, for the messages refusing what it cannot have.
    what = ""

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        refused = [
            asked
            for asked, given in (
                (f"options {sorted(spec.options)}", spec.options),
                ("a subnet", spec.ipam),
                ("enable_ipv6", spec.enable_ipv6),
                ("internal", spec.internal and not self.own_namespace),
            )
            if given
        ]
        if refused:
            raise InvalidParameter(
                f"network driver {self.name} is {self.what}: {refused[0]} refused"
            )
        return NetworkState(id=spec.id, name=spec.name, internal=self.own_namespace)

    def delete_network(self, state: NetworkState) -> None:
        pass

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        if endpoint.ipv4 or endpoint.mac:
            raise InvalidParameter(f"network driver {self.name} is {self.what}: --ip/--mac refused")
        if self.own_namespace and not netns.is_namespace(endpoint.netns):
            raise NotFound(f"network namespace {endpoint.netns} does not exist")
        return EndpointState(
            id=endpoint.id,
            network_id=network.id,
            container_id=endpoint.container_id,
            netns=endpoint.netns,
        )

    def disconnect(self, network: NetworkState, endpoint: EndpointState) -> None:
        pass

    def publish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> list[PortBinding]:
        return []

    def unpublish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> None:
        pass

    def restore(
        self,
        networks: Sequence[NetworkState],
        endpoints: Sequence[EndpointState],
        ports: Mapping[str, Sequence[PortBinding]],
    ) -> None:
        pass  # nothing was made, so nothing can be missing or left over


class NoNetwork(_Unplumbed):
    name = "null"
    what = "loopback only"


class HostNetwork(_Unplumbed):
    name = "host"
    own_namespace = False
    what = "the host's own network"


@hookimpl
def dockyard_network_drivers() -> list[DriverInfo]:
    return [
        DriverInfo(
            name="null",  # docker's name for the driver of its "none" network
            kind=DriverKind.NETWORK,
            factory=lambda config, context: NoNetwork(),
            description="a network namespace of its own with loopback only (--network none)",
        ),
        DriverInfo(
            name="host",
            kind=DriverKind.NETWORK,
            factory=lambda config, context: HostNetwork(),
            description="the host's own network namespace (--network host)",
        ),
    ]
