"""Building images from a Dockerfile with the classic builder's semantics."""
