"""Containers: their records, the per-container supervisor, logs, and the lifecycle manager.

A container is created from an image (a writable snapshot over its layers, a resolved
:class:`~dockyard.core.interfaces.ContainerSpec`), then started by a supervisor process that
outlives the daemon. State lives in ``<data root>/containers/<id>/``; the daemon re-reads it on
start and picks up containers that kept running while it was down.
"""
