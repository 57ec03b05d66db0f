"""Built-in registries plugins."""
