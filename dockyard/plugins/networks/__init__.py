"""The built-in network drivers: ``none``, ``host`` and ``bridge``."""
