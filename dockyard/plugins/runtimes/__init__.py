"""Built-in runtimes plugins."""
