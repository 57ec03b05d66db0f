"""The client side of the distribution protocol, shared by the daemon (pull, push, login) and
the registry (its pull-through cache): the library that moby's ``distribution`` package is to
dockerd.

- :mod:`~.reference`: image references as docker reads and normalises them;
- :mod:`~.endpoints`: which URLs to try for a registry (HTTPS first; plain HTTP only for
  ``insecure-registries`` and loopback) and the TLS each gets (``certs.d``);
- :mod:`~.challenges`: a response's ``WWW-Authenticate`` challenges (core's reader, per
  header);
- :mod:`~.credentials`: what an exchange authenticates with;
- :mod:`~.tokens`: the token server exchange and the per-scope token cache;
- :mod:`~.client`: :class:`~.client.RegistryClient`, the one door every registry request
  goes through (ping, challenges, authorization, retry with a fresh token);
- :mod:`~.errors`: failures in dockerd's words;
- :mod:`~.remote`: one repository's manifests (parsed and checked) and blobs (streamed).

It imports core only: no program, no toolkit, no plugin.
"""
