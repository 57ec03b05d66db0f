"""The daemon's networks: the records of networks and endpoints, the drivers that plumb them,
container name resolution, and the ``/networks`` API's model."""
