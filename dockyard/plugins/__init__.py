"""The built-in plugins, one self-contained module or package each.

The plugin host registers each under the stable name of
:data:`dockyard.core.plugins.BUILTIN_PLUGINS`. Every plugin could live in its own distribution:
it imports only :mod:`dockyard.core` (hook markers, driver records, interfaces, config, errors)
and the toolkit :mod:`dockyard.linux`, never another plugin (``lint-imports`` checks).
"""
