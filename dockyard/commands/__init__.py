"""The ``dockyard`` command's commands, a module per family; :mod:`dockyard.cli` puts them together.

At module level these import only the standard library and core's standard-library-only
vocabularies, :mod:`dockyard.core.hosts`, :mod:`dockyard.core.units` and
:mod:`dockyard.core.platforms` (``tests/core/test_cli.py`` checks); :mod:`dockyard.client` and
the rest of the core are imported inside the functions that need them.
"""
