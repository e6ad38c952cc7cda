"""The torch device a command asked for, checked before any work starts."""

from __future__ import annotations

import torch

from world.base import WorldError


def torch_device(name: str | torch.device) -> torch.device:
    """``torch.device(name)``, or a :class:`WorldError` saying what to use instead.

    A CPU-only build of torch fails late and obscurely on ``"cuda"`` (an assertion inside
    ``Module.to``); this fails first, with a sentence the user can act on.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise WorldError(f"{name!r} is not a torch device ({err}); use cpu or cuda.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorldError(f"The device {name!r} was asked for, but this machine has no usable "
                         "CUDA GPU; use cpu.")
    return device
