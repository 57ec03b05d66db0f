"""The dockyard core: hook specifications, plugin loading, configuration and orchestration.

Nothing here does concrete work (running processes, unpacking layers, storing blobs); that is
what plugins are for. Importing this package is cheap: the daemon's web stack is only imported by
``dockyard.daemon.main``.
"""
