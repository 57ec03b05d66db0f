"""Network driver ``none``: the container keeps its own network namespace with loopback only.

Docker's ``--network none``. The namespace file the core made already has ``lo`` up
(:func:`dockyard.linux.netns.create`), so there is nothing to plumb; ports are never reachable,
so publishing one publishes nothing, as docker discards them on this network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
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


class NoNetwork:
    """Makes nothing: every call checks its input and records it. Stateless."""

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        if spec.options:
            raise InvalidParameter(f"network driver none takes no options: {sorted(spec.options)}")
        if spec.ipam:
            raise InvalidParameter("network driver none has no addresses: subnet refused")
        if spec.enable_ipv6:
            raise InvalidParameter("network driver none has no addresses: enable_ipv6 refused")
        return NetworkState(id=spec.id, name=spec.name, internal=True)

    def delete_network(self, state: NetworkState) -> None:
        pass

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        if endpoint.ipv4 or endpoint.mac:
            raise InvalidParameter("network driver none gives no address: --ip/--mac refused")
        if not netns.is_namespace(endpoint.netns):
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
        return []  # nothing can reach a namespace with loopback only

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
        pass  # nothing was made, so nothing can be missing


def build(config: EmptyConfig, context: DriverContext) -> NoNetwork:
    return NoNetwork()


@hookimpl
def dockyard_network_drivers() -> DriverInfo:
    return DriverInfo(
        name="none",
        kind=DriverKind.NETWORK,
        factory=build,
        description="a network namespace of its own with loopback only (docker's --network none)",
    )
