"""Guards: every hook spec and interface method is documented; hooks are exercised elsewhere.

Exercise is proven by ``test_daemon.py::test_plugin_routes_hooks_and_events_all_run``, which
starts a daemon with a plugin implementing every hook and compares the calls it recorded with
the full set of specs. This module checks that the set it compares against is the real one.
"""

from __future__ import annotations

import inspect

import pytest

from dockyard.core import hookspecs, interfaces

SPECS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("dockyard_") and hasattr(value, "dockyard_spec")
)


def test_hookspecs_exist():
    assert len(SPECS) >= 9
    assert sorted(n for n in dir(hookspecs) if n.startswith("dockyard_")) == SPECS


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_is_documented(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc.split()) >= 25, (
        f"{name}: the docstring must say who calls it, when, and what a result means"
    )
    assert "Called" in doc, f"{name}: say who calls it and when ('Called by ...')"


INTERFACES = [
    interfaces.StorageDriver,
    interfaces.Runtime,
    interfaces.RegistryBackend,
    interfaces.AuthProvider,
    interfaces.BlobWriter,
    interfaces.LogDriver,
    interfaces.LogWriter,
    interfaces.LogReader,
]


@pytest.mark.parametrize("protocol", INTERFACES, ids=lambda p: p.__name__)
def test_interface_methods_are_documented(protocol):
    assert inspect.getdoc(protocol)
    methods = [name for name, _ in inspect.getmembers(protocol) if not name.startswith("_")]
    assert methods
    for name in methods:
        assert inspect.getdoc(getattr(protocol, name)), (
            f"{protocol.__name__}.{name} has no docstring"
        )


def test_recorder_plugin_implements_every_spec():
    from pathlib import Path

    source = (
        Path(__file__).parent.parent / "plugins" / "dockyard-test-plugins" / "dockyard_recorder.py"
    ).read_text()
    missing = [name for name in SPECS if f"def {name}(" not in source]
    assert missing == [], "add these hooks to the recorder so the exercise test covers them"
