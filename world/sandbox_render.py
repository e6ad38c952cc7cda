"""Old path of :mod:`world.sandbox.render` (moved there), kept for its callers: the same module."""

import sys

import world.sandbox.render as _module

sys.modules[__name__] = _module  # one module object: names, private helpers and patches agree
