"""A plugin with a misspelled hook name: the core must refuse it rather than ignore it."""

from dockyard.core.hookspecs import hookimpl


@hookimpl
def dockyard_storge_drivers():
    return None
