"""The json-file log driver: docker's default, in docker's format (see ``plugin.py``)."""
