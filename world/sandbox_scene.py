"""Old path of :mod:`world.sandbox.scene` (moved there), kept for its callers: the same module."""

import sys

import world.sandbox.scene as _module

sys.modules[__name__] = _module  # one module object: names, private helpers and patches agree
