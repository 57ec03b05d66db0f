"""dockyard: a container engine in Python, built the way Docker is (client, daemon, registry)."""

__version__ = "0.1.0"
