"""Old path of :mod:`world.training.data` (moved there), kept for its callers: the same module."""

import sys

import world.training.data as _module

sys.modules[__name__] = _module  # one module object: names, private helpers and patches agree
