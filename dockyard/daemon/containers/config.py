"""The Engine API's container documents as typed records (API 1.41).

``POST /containers/create`` sends a :class:`CreateRequest` (the container's ``Config`` with
``HostConfig`` and ``NetworkingConfig`` inside), ``POST /containers/{id}/exec`` an
:class:`ExecConfig` and ``POST /exec/{id}/start`` an :class:`ExecStartConfig`. The fields are
docker's, with Go's types (moby's ``api/types/container``); :mod:`dockyard.daemon.decoding` turns
request bodies into these records, refusing wrong types with a 400 that names the field, and
turns them back into JSON for ``inspect``. A container keeps its resolved ``Config`` and
``HostConfig`` as records too.

What each field *does* is decided in :mod:`dockyard.daemon.containers.spec`; being listed here
only means the daemon can read it.
"""

from __future__ import annotations

from typing import Any

import attrs

from dockyard.daemon.decoding import UInt, json_key, str_slice


@attrs.frozen(kw_only=True)
class RestartPolicy:
    name: str = ""
    maximum_retry_count: int = 0


@attrs.frozen(kw_only=True)
class LogConfig:
    type: str = ""
    config: dict[str, str] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class BindOptions:
    propagation: str = ""
    non_recursive: bool = False


@attrs.frozen(kw_only=True)
class DriverConfig:
    name: str = ""
    options: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class VolumeOptions:
    no_copy: bool = False
    labels: dict[str, str] | None = None
    driver_config: DriverConfig | None = None


@attrs.frozen(kw_only=True)
class TmpfsOptions:
    size_bytes: int = 0
    mode: UInt = UInt(0)


@attrs.frozen(kw_only=True)
class MountConfig:
    """One ``HostConfig.Mounts`` entry (``--mount``)."""

    type: str = ""
    source: str = ""
    target: str = ""
    read_only: bool = False
    consistency: str = ""
    bind_options: BindOptions | None = None
    volume_options: VolumeOptions | None = None
    tmpfs_options: TmpfsOptions | None = None


@attrs.frozen(kw_only=True)
class DeviceMapping:
    path_on_host: str = ""
    path_in_container: str = ""
    cgroup_permissions: str = ""


@attrs.frozen(kw_only=True)
class DeviceRequest:
    driver: str = ""
    count: int = 0
    device_ids: list[str] | None = json_key("DeviceIDs", default=None)
    capabilities: list[list[str]] | None = None
    options: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class WeightDevice:
    path: str = ""
    weight: UInt = UInt(0)


@attrs.frozen(kw_only=True)
class ThrottleDevice:
    path: str = ""
    rate: UInt = UInt(0)


@attrs.frozen(kw_only=True)
class Ulimit:
    name: str = ""
    soft: int = 0
    hard: int = 0


@attrs.frozen(kw_only=True)
class PortBinding:
    host_ip: str = ""
    host_port: str = ""


@attrs.frozen(kw_only=True)
class HealthConfig:
    test: list[str] | None = None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    retries: int = 0


@attrs.frozen(kw_only=True)
class HostConfig:
    """``HostConfig``: everything about a container that depends on the host."""

    # Resources
    cpu_shares: int = 0
    memory: int = 0
    cgroup_parent: str = ""
    blkio_weight: UInt = UInt(0)
    blkio_weight_device: list[WeightDevice] | None = None
    blkio_device_read_bps: list[ThrottleDevice] | None = None
    blkio_device_write_bps: list[ThrottleDevice] | None = None
    blkio_device_read_iops: list[ThrottleDevice] | None = json_key(
        "BlkioDeviceReadIOps", default=None
    )
    blkio_device_write_iops: list[ThrottleDevice] | None = json_key(
        "BlkioDeviceWriteIOps", default=None
    )
    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_realtime_period: int = 0
    cpu_realtime_runtime: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    devices: list[DeviceMapping] | None = None
    device_cgroup_rules: list[str] | None = None
    device_requests: list[DeviceRequest] | None = None
    kernel_memory: int = 0
    kernel_memory_tcp: int = json_key("KernelMemoryTCP", default=0)
    memory_reservation: int = 0
    memory_swap: int = 0
    memory_swappiness: int | None = None
    nano_cpus: int = 0
    oom_kill_disable: bool | None = None
    init: bool | None = None
    pids_limit: int | None = None
    ulimits: list[Ulimit] | None = None
    cpu_count: int = 0
    cpu_percent: int = 0
    io_maximum_iops: int = json_key("IOMaximumIOps", default=0)
    io_maximum_bandwidth: int = json_key("IOMaximumBandwidth", default=0)
    # The rest of HostConfig
    binds: list[str] | None = None
    container_id_file: str = json_key("ContainerIDFile", default="")
    log_config: LogConfig = attrs.Factory(LogConfig)
    network_mode: str = ""
    port_bindings: dict[str, list[PortBinding] | None] | None = None
    restart_policy: RestartPolicy = attrs.Factory(RestartPolicy)
    auto_remove: bool = False
    volume_driver: str = ""
    volumes_from: list[str] | None = None
    mounts: list[MountConfig] | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    cgroupns_mode: str = ""
    dns: list[str] | None = None
    dns_options: list[str] | None = None
    dns_search: list[str] | None = None
    extra_hosts: list[str] | None = None
    group_add: list[str] | None = None
    ipc_mode: str = ""
    cgroup: str = ""
    links: list[str] | None = None
    oom_score_adj: int = 0
    pid_mode: str = ""
    privileged: bool = False
    publish_all_ports: bool = False
    readonly_rootfs: bool = False
    security_opt: list[str] | None = None
    storage_opt: dict[str, str] | None = None
    tmpfs: dict[str, str] | None = None
    uts_mode: str = json_key("UTSMode", default="")
    userns_mode: str = ""
    shm_size: int = 0
    sysctls: dict[str, str] | None = None
    runtime: str = ""
    console_size: list[int] | None = None
    isolation: str = ""
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None


@attrs.frozen(kw_only=True)
class EndpointIPAMConfig:
    ipv4_address: str = json_key("IPv4Address", default="")
    ipv6_address: str = json_key("IPv6Address", default="")
    link_local_ips: list[str] | None = json_key("LinkLocalIPs", default=None)


@attrs.frozen(kw_only=True)
class EndpointSettings:
    ipam_config: EndpointIPAMConfig | None = json_key("IPAMConfig", default=None)
    links: list[str] | None = None
    aliases: list[str] | None = None
    network_id: str = json_key("NetworkID", default="")
    endpoint_id: str = json_key("EndpointID", default="")
    gateway: str = ""
    ip_address: str = json_key("IPAddress", default="")
    ip_prefix_len: int = json_key("IPPrefixLen", default=0)
    ipv6_gateway: str = json_key("IPv6Gateway", default="")
    global_ipv6_address: str = json_key("GlobalIPv6Address", default="")
    global_ipv6_prefix_len: int = json_key("GlobalIPv6PrefixLen", default=0)
    mac_address: str = ""
    driver_opts: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class NetworkingConfig:
    endpoints_config: dict[str, EndpointSettings | None] | None = None


@attrs.frozen(kw_only=True)
class ContainerConfig:
    """``Config``: the container's portable configuration (image defaults merged in)."""

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: dict[str, Any] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: list[str] | None = None
    cmd: list[str] | None = str_slice()
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: dict[str, Any] | None = None
    working_dir: str = ""
    entrypoint: list[str] | None = str_slice()
    network_disabled: bool = False
    mac_address: str = ""
    on_build: list[str] | None = None
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None
    shell: list[str] | None = str_slice()


@attrs.frozen(kw_only=True)
class CreateRequest(ContainerConfig):
    """The body of ``POST /containers/create``."""

    host_config: HostConfig = attrs.Factory(HostConfig)
    networking_config: NetworkingConfig = attrs.Factory(NetworkingConfig)

    @property
    def config(self) -> ContainerConfig:
        """The request without its host and networking parts."""
        names = attrs.fields_dict(ContainerConfig)
        return ContainerConfig(**{name: getattr(self, name) for name in names})


@attrs.frozen(kw_only=True)
class ExecConfig:
    """The body of ``POST /containers/{id}/exec``."""

    user: str = ""
    privileged: bool = False
    tty: bool = False
    console_size: list[int] | None = None
    attach_stdin: bool = False
    attach_stderr: bool = False
    attach_stdout: bool = False
    detach: bool = False
    detach_keys: str = ""
    env: list[str] | None = None
    working_dir: str = ""
    cmd: list[str] | None = None


@attrs.frozen(kw_only=True)
class ExecStartConfig:
    """The body of ``POST /exec/{id}/start``."""

    detach: bool = False
    tty: bool = False
    console_size: list[int] | None = None
