"""The registry: an OCI Distribution Specification v1.1 server over a pluggable byte store.

The core owns everything that makes a registry a registry (the HTTP API, the storage layout of
blobs, manifests, tags, referrers and upload sessions, digest verification, garbage collection);
a :class:`~dockyard.core.interfaces.RegistryBackend` only stores bytes under paths.

Modules: :mod:`.names` (name, tag and digest grammar), :mod:`.errors` (the spec's error codes),
:mod:`.layout` (where things live in the backend), :mod:`.manifests` (media types, validation),
:mod:`.store` (blocking operations on the layout), :mod:`.app` (the starlette app), :mod:`.gc`
(mark and sweep, safe while pushes go on), :mod:`.proxy` (the pull-through cache of a remote
registry, ``[registry] proxy``: its handlers fill the store from the remote through
:mod:`dockyard.distribution`'s client and refuse every write) and :mod:`.main`
(``dockyard registry``).
"""
