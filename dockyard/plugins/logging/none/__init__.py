"""The none log driver: no logs kept, ``docker logs`` refused as by dockerd (``plugin.py``)."""
