"""Old path of :mod:`world.training.idm` (moved there), kept for its callers: the same module."""

import sys

import world.training.idm as _module

sys.modules[__name__] = _module  # one module object: names, private helpers and patches agree
