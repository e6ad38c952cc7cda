"""Everything that makes and measures the learned world model, apart from the model itself.

- :mod:`world.training.data`: sandbox exploration clips on disk (safetensors shards + index);
- :mod:`world.training.train`: the MVDT training loop (checkpoints, resume, export);
- :mod:`world.training.recipe`: one recipe file of stages that rebuilds a checkpoint
  (``yume world train --recipe``);
- :mod:`world.training.distill`: the few-step student;
- :mod:`world.training.idm`: the inverse-dynamics action classifier (evaluator, critic);
- :mod:`world.training.evaluate`: PSNR/SSIM against the sandbox, action following, drift, speed.

The model lives in :mod:`world.mvdt`; the old paths ``world.data``, ``world.train``,
``world.distill``, ``world.idm`` and ``world.evaluate`` still import (they are these modules).
Nothing is imported here, so ``import world.training.data`` stays as light as that module.
"""
