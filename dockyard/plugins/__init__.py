"""The built-in plugins, one self-contained module or package each.

The core registers each under the stable name given here. Every plugin could live in its own
distribution: it imports only the public parts of ``dockyard.core`` (hook markers, driver
records, interfaces, errors).
"""

#: Stable plugin name -> module path. A kind whose drivers have not landed yet lists none.
BUILTIN_PLUGINS: dict[str, str] = {
    "overlay": "dockyard.plugins.storage.overlay",
    "vfs": "dockyard.plugins.storage.vfs",
    "filesystem": "dockyard.plugins.registries.filesystem",
    "s3": "dockyard.plugins.registries.s3",
    "namespaces": "dockyard.plugins.runtimes.namespaces.plugin",
    "runc": "dockyard.plugins.runtimes.runc.plugin",
}
