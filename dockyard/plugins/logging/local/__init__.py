"""The local log driver: dockerd's defaults and options, our own compact format (``plugin.py``)."""
