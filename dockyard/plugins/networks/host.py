"""Network driver ``host``: the container shares the host's network namespace.

Docker's ``--network host``. The runtime runs such a container in the host's namespace, so
the core makes no namespace file for it and this driver plumbs nothing. A server in the
container listens on the host's addresses directly: there is no port to publish, and docker
discards published ports on this network, as :meth:`HostNetwork.publish` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
from dockyard.core.errors import InvalidParameter
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import (
    EndpointSpec,
    EndpointState,
    NetworkSpec,
    NetworkState,
    PortBinding,
)


class HostNetwork:
    """Makes nothing and refuses what the host's own network cannot give. Stateless."""

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        refused = [
            what
            for what, asked in (
                (f"options {sorted(spec.options)}", spec.options),
                ("a subnet", spec.ipam),
                ("enable_ipv6", spec.enable_ipv6),
                ("internal", spec.internal),
            )
            if asked
        ]
        if refused:
            raise InvalidParameter(
                f"network driver host is the host's network: {refused[0]} refused"
            )
        return NetworkState(id=spec.id, name=spec.name)

    def delete_network(self, state: NetworkState) -> None:
        pass

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        if endpoint.ipv4 or endpoint.mac:
            raise InvalidParameter(
                "network driver host has the host's addresses: --ip/--mac refused"
            )
        # endpoint.netns is not looked at: the container runs in the host's namespace.
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
        return []  # the container's servers are on the host's ports already

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
        pass


def build(config: EmptyConfig, context: DriverContext) -> HostNetwork:
    return HostNetwork()


@hookimpl
def dockyard_network_drivers() -> DriverInfo:
    return DriverInfo(
        name="host",
        kind=DriverKind.NETWORK,
        factory=build,
        description="the host's own network namespace (docker's --network host)",
    )
