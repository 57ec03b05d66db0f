"""The ``dockyard`` command's commands, a module per family; :mod:`dockyard.cli` puts them together.

At module level these import only the standard library, :mod:`dockyard.core.hosts` and
:mod:`dockyard.core.units` (``tests/core/test_cli.py`` checks); :mod:`dockyard.client` and the
core are imported inside the functions that need them.
"""
