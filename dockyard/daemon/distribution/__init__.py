"""The daemon as a registry client: pull, push and login, on the shared client library
(:mod:`dockyard.distribution`).

- :mod:`~.authconfig`: docker's ``AuthConfig`` from ``POST /auth`` and ``X-Registry-Auth``;
- :mod:`~.service`: :class:`~.service.RegistryService`, the daemon's instance: settings,
  shared token cache, ``login`` and ``connect``;
- :mod:`~.progress`: the JSON-message stream's progress messages, as dockerd renders them;
- :mod:`~.pull`: :class:`~.pull.Puller`, pulls into the image store, resumable downloads,
  and ``GET /distribution/{name}/json``;
- :mod:`~.push`: ``POST /images/{name}/push``: what the registry lacks, mounted or compressed
  and streamed, then the manifest; :mod:`~.blobsources` records where layers were seen.
"""
