"""The guard against options accepted and ignored: a field the engine does not apply is a 400
naming it, and what clients send for options left alone passes."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers import spec
from dockyard.daemon.containers.config import (
    ContainerConfig,
    CreateRequest,
    HealthConfig,
    HostConfig,
)
from dockyard.daemon.containers.unapplied import UNAPPLIED, Unapplied, refuse_unapplied
from dockyard.daemon.engine_api import ENGINE_API
from tests.logging.drivers import BUILTIN_LOG_DRIVERS

SETTINGS = spec.DaemonSettings(cpu_count=2, host_name="the-host", logging=BUILTIN_LOG_DRIVERS)


def a_value_for(row: Unapplied) -> object:
    """A value a user could ask for, of the field's type."""
    record = attrs.resolve_types(row.record)
    field = attrs.fields_dict(record)[row.attribute]
    kind = str(field.type)
    if row.attribute == "isolation":
        return "hyperv"
    if kind.startswith("list"):
        return ["x"]
    if kind.startswith("dict"):
        return {"x": "y"}
    if "bool" in kind:
        return True
    if "int" in kind.lower():
        return 10
    return "x"


@pytest.mark.parametrize("row", UNAPPLIED, ids=lambda row: row.json_name)
def test_each_unapplied_field_is_refused_by_name(row: Unapplied) -> None:
    host, config = HostConfig(), ContainerConfig()
    if row.record is HostConfig:
        host = attrs.evolve(host, **{row.attribute: a_value_for(row)})
    else:
        config = attrs.evolve(config, **{row.attribute: a_value_for(row)})
    with pytest.raises(InvalidParameter, match=row.json_name.replace(".", r"\.")):
        refuse_unapplied(config, host)


def test_the_zero_values_clients_send_pass() -> None:
    """docker CLI 28's body for ``docker create busybox true``: every option left alone."""
    body = {
        "Image": "busybox",
        "Cmd": ["true"],
        "Healthcheck": None,
        "HostConfig": {
            "CpuShares": 0,
            "BlkioWeight": 0,
            "BlkioWeightDevice": [],
            "CpusetCpus": "",
            "Devices": [],
            "DeviceCgroupRules": None,
            "DeviceRequests": None,
            "MemorySwap": 0,
            "MemorySwappiness": None,
            "OomKillDisable": False,
            "Init": None,
            "Ulimits": None,
            "VolumesFrom": None,
            "GroupAdd": None,
            "IpcMode": "",
            "PidMode": "",
            "UTSMode": "",
            "ShmSize": 0,
            "Isolation": "",
            "MaskedPaths": None,
            "ReadonlyPaths": None,
            "CgroupnsMode": "",
        },
    }
    plan = spec.plan(ENGINE_API.decode(body, CreateRequest), ContainerConfig(), SETTINGS)
    assert plan.args == ("true",)


def test_health_checks_are_applied_not_refused() -> None:
    for test in (["NONE"], ["CMD", "true"], ["CMD-SHELL", "true"]):
        refuse_unapplied(ContainerConfig(healthcheck=HealthConfig(test=test)), HostConfig())


def test_the_readme_lists_every_refused_field_and_no_other() -> None:
    """The README's table of refused fields is this table: a field implemented (its row gone)
    or newly refused must show there too."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Options, and what is refused", 1)[1]
    section = section.split("Values refused for a reason of their own", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = [line.split("`")[1] for line in rows]
    assert listed == [row.json_name for row in UNAPPLIED]
    for line, row in zip(rows, UNAPPLIED, strict=True):
        assert (f"(`{row.flag}`)" in line) == bool(row.flag), line
        assert line.rstrip(" |").endswith(row.reason), line
