"""Test suites and helpers that plugin authors import to check their drivers against dockyard's
contracts (see :mod:`dockyard.testing.storage`). They need pytest, from the ``test`` extra."""
