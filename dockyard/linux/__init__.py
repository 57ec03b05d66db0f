"""The toolkit: what runtimes and storage drivers need from Linux, as a public API.

Every module here is standard library (plus ctypes) only and cheap to import, because the
container supervisor and the exec helper import them on every start. Plugins build on these
instead of on each other:

* :mod:`.syscalls`: ctypes wrappers for the calls Python 3.11 lacks (mount, unshare, setns,
  pivot_root, prctl, capabilities, the new mount API);
* :mod:`.mounts`: performing a storage driver's mount list;
* :mod:`.idmap`: idmapped mounts for user-namespaced containers;
* :mod:`.cgroups`: a container's cgroups on v1, hybrid and v2 hosts;
* :mod:`.seccomp`: docker's default seccomp policy;
* :mod:`.layertar`: safe extraction of layer tars, whiteouts, and writing diffs;
* :mod:`.objectstore` and :mod:`.trees`: crash-safe layer and snapshot directories, and
  copying and comparing trees with all their metadata;
* :mod:`.inroot`: reading a file of a container's root without leaving it;
* :mod:`.processes`: processes held by pidfds (signals that never reach a pid's next
  owner) and what ``ps`` shows of them.

This package's ``__init__`` imports nothing, so importing one module costs only that module.
"""
