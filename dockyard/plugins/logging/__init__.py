"""Built-in log drivers: json-file, local and none (``--log-driver``).

Each package keeps its writer (imported by the container's supervisor: standard library and
:mod:`dockyard.core` only) apart from its plugin module (imported by the daemon's plugin host).
"""
