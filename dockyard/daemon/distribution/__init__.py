"""The daemon as a registry client: how it reaches registries and authenticates to them.

- :mod:`~.endpoints`: which URLs to try for a registry (HTTPS first; plain HTTP only for
  ``insecure-registries`` and loopback) and the TLS each gets (``registry-certs-dir``);
- :mod:`~.challenges`: a response's ``WWW-Authenticate`` challenges (core's reader, per
  header);
- :mod:`~.credentials`: docker's ``AuthConfig`` from ``POST /auth`` and ``X-Registry-Auth``;
- :mod:`~.tokens`: the token server exchange and the per-scope token cache;
- :mod:`~.client`: :class:`~.client.RegistryClient`, the one door every registry request
  goes through (ping, challenges, authorization, retry with a fresh token);
- :mod:`~.errors`: failures in dockerd's words;
- :mod:`~.service`: :class:`~.service.RegistryService`, the daemon's instance: settings,
  shared token cache, ``login`` and ``connect``;
- :mod:`~.remote`: one repository's manifests (parsed and checked) and blobs (streamed);
- :mod:`~.progress`: the JSON-message stream's progress messages, as dockerd renders them;
- :mod:`~.pull`: :class:`~.pull.Puller`, pulls into the image store, resumable downloads,
  and ``GET /distribution/{name}/json``;
- :mod:`~.push`: ``POST /images/{name}/push``: what the registry lacks, mounted or compressed
  and streamed, then the manifest; :mod:`~.blobsources` records where layers were seen.
"""
