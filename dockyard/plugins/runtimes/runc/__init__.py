"""The ``runc`` runtime plugin; the plugin host registers its :mod:`.plugin` module.

The supervisor imports :mod:`.launch` on every container start, which imports this package
first: so this file stays empty of imports, and the hook and driver code (pluggy, config, the
daemon-side runtime) live in :mod:`.plugin`, imported only by the plugin host.
"""
