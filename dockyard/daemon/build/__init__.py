"""Building images from a Dockerfile, as docker's classic builder does."""
