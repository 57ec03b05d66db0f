"""The dockyard core: the framework every program and plugin shares, and nothing else.

What is here: the hook specifications (:mod:`.hookspecs`), the plugin host that loads plugins
and selects drivers (:mod:`.plugins`), driver records (:mod:`.drivers`) and the interfaces
drivers implement (:mod:`.interfaces`), the configuration file (:mod:`.config`), errors,
events, logging, serving on sockets (:mod:`.server`), and small shared vocabularies (hosts,
units, timestamps, platforms, media types, capability names).

The programs are packages of their own (:mod:`dockyard.daemon`, :mod:`dockyard.registry`, the
client in :mod:`dockyard.cli`), concrete behaviour lives in plugins (:mod:`dockyard.plugins`),
and what plugins need from the OS in the toolkit (:mod:`dockyard.linux`); the core imports
none of them (``lint-imports`` checks). Importing this package is cheap: the modules the
client uses (hosts, units) are standard library only.
"""
