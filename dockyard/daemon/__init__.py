"""The daemon (``dockyard daemon``): the engine behind the Docker Engine API.

It owns the image store (:mod:`.images`), containers and their supervisors (:mod:`.containers`),
volumes (:mod:`.volumes`) and the HTTP API (:mod:`.api`), and drives the selected storage
driver and runtime through the interfaces of :mod:`dockyard.core.interfaces`. :mod:`.main`
assembles it all from the plugins and serves it.
"""
