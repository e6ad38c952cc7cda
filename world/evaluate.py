"""Old path of :mod:`world.training.evaluate` (moved there), kept for callers."""

import sys

import world.training.evaluate as _module

sys.modules[__name__] = _module  # one module object: names, private helpers and patches agree
