"""A plugin whose shutdown fails: the others' shutdowns must run all the same."""

from dockyard.core.hookspecs import hookimpl


@hookimpl
def dockyard_shutdown(service):
    raise RuntimeError(f"the unruly plugin will not shut down ({service.program})")
