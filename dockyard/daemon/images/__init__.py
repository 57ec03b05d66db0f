"""The daemon's local image store: content-addressed blobs, layers, images and references.

The store keeps the layouts (which layers make an image, which layers sit on which); the
selected storage driver only unpacks layers and prepares root filesystems. Every write is
atomic (temp file, fsync, rename) and ordered so that a daemon killed at any moment restarts
into a consistent store: blobs first, then the layer record, then the image record, then the
reference. :meth:`ImageStore.reconcile` removes whatever a crash left half made.
"""
