"""The ``token`` auth plugin: Docker's registry token authentication (see README.md here).

``[registry] auth = "token"`` makes the registry ask for bearer tokens and serve the token
endpoint at ``/token``; the options are in ``[auth.token]`` (:class:`.config.TokenConfig`).

Users file (``users-file``, default ``<state dir>/users.toml``), written by ``dockyard
registry user add/rm`` atomically with mode 0600::

    [users."alice"]
    password = "$2b$10$..."        # bcrypt; htpasswd -B hashes ($2y$) work too

Rules file (``rules-file``; without one every user may do everything and anonymous nothing)::

    [groups]
    dev = ["alice", "bob"]

    [[rules]]
    subjects = ["anonymous"]       # also: "*" (any user), "group:NAME", a user name
    repositories = ["library/*"]   # "*" within a path component, "**" across, "{user}"
    actions = ["pull"]             # pull, push, delete, "*" (all three)

    [[rules]]
    subjects = ["group:dev"]
    repositories = ["team/**", "{user}/**"]
    actions = ["pull", "push"]

    [[rules]]
    subjects = ["alice"]
    catalog = true                 # registry:catalog:*

Rules only allow, and add up; what anonymous may do, everyone may. Unknown keys in either file
are refused, naming the file and the key.
"""
