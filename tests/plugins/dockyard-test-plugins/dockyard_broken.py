"""A plugin whose import fails, as one with a missing dependency does."""

import frobnicate_library_that_does_not_exist  # noqa: F401
