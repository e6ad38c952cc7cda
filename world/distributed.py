"""Classifier-free-guidance parallel sampling over two ranks with ``torch.distributed``.

The MVDT sampler (:mod:`world.mvdt.samplers`) makes two model calls per guided step, one with
the commanded action (cond) and one with the negative (uncond), and combines them as
``v_u + g (v_c - v_u)``. The two calls are independent, so two GPUs can make them at once
(xDiT's "CFG parallel"): rank 0 computes the conditional velocity, rank 1 the unconditional,
an ``all_gather`` gives both ranks both, and each rank combines them identically. Unguided calls
(``g = 1``, steps outside the guidance interval, AAM's unguided pass) are made by rank 0 alone
and broadcast, so rank 0 sees exactly the calls, and the residual cache exactly the call history,
of one process. At the end of each chunk the ranks compare their latents (the largest
difference is kept in :attr:`CFGParallelMixin.divergence`) and take rank 0's, so every rank
leaves with the same latents.

Per guided step each rank makes one model call instead of two, so guided sampling takes at
best half the time, plus one exchange of a velocity (a few MB) per step; unguided steps gain
nothing. Every rank holds the whole model. On CUDA the two ranks need two GPUs (NCCL does not
put two ranks on one device).

Launch (``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc_per_node=2 -m world.distributed --preset tiny --steps 4 --chunks 2
    torchrun --nproc_per_node=2 -m world.distributed --checkpoint world/checkpoints/mvdt-sandbox
    python -m world.distributed --single ...      # the same run in one process (reference)

Backend: ``gloo`` on the CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from world.base import WorldError
from world.mvdt.samplers import Sampler, Velocity

CFG_RANKS = 2  # rank 0: conditional call, rank 1: unconditional call


class CFGParallelMixin:
    """Sampler behaviour that splits each guided step's two model calls over two ranks.

    Mixed in front of a :class:`~world.mvdt.samplers.Sampler` class by
    :func:`cfg_parallel_sampler`; needs an initialised process group of two ranks.
    """

    group: Any = None
    divergence: float = 0.0  # largest |latents(rank 0) - latents(rank 1)| of the last chunk
    local_evals: int = 0  # model calls this rank made in the last chunk

    def _rank(self) -> int:
        return dist.get_rank(self.group)

    def guided(self, velocity: Velocity, x: torch.Tensor, sigma: float, cond: Any, uncond: Any,
               scale: float | None = None) -> torch.Tensor:
        g = self.guidance_scale if scale is None else scale
        low, high = self.guidance_interval
        rank = self._rank()
        if g == 1.0 or not low - 1e-9 <= float(sigma) <= high + 1e-9:
            # One call: rank 0 makes it (so its cache sees one process's call sequence) and
            # sends it in the sampler state's dtype (bf16 -> fp32 is exact, so the update
            # x + dsigma v is the one a single process computes).
            if rank == 0:
                v = velocity(x, sigma, cond).to(x.dtype).contiguous()
                self.local_evals += 1
            else:
                v = torch.empty_like(x)
            dist.broadcast(v, src=dist.get_global_rank(self.group, 0)
                           if self.group is not None else 0, group=self.group)
            self.num_evals += 1
            return v
        if uncond is None:
            raise WorldError("Guidance scale != 1 needs an unconditional input (the null prompt); "
                             "pass uncond or set guidance_scale=1.")
        mine = velocity(x, sigma, cond if rank == 0 else uncond).contiguous()
        self.local_evals += 1
        both = [torch.empty_like(mine) for _ in range(CFG_RANKS)]
        dist.all_gather(both, mine, group=self.group)
        self.num_evals += 2  # calls of the whole group, as a single process counts them
        v_c, v_u = both
        return v_u + g * (v_c - v_u)

    def __call__(self, velocity, noise, cond, uncond=None, generator=None, callback=None):
        self.local_evals = 0
        out = super().__call__(velocity, noise, cond, uncond, generator=generator,
                               callback=callback).contiguous()
        both = [torch.empty_like(out) for _ in range(CFG_RANKS)]
        dist.all_gather(both, out, group=self.group)
        self.divergence = float((both[0].float() - both[1].float()).abs().max())
        return both[0]


def cfg_parallel_sampler(sampler: Sampler, group: Any = None) -> Sampler:
    """A copy of ``sampler`` whose guided steps run over the two ranks of ``group``.

    Parameters
    ----------
    sampler : Sampler
        Any sampler of :mod:`world.mvdt.samplers` (Euler, TTS-SDE, AAM); its parameters and
        registry name are kept.
    group : ProcessGroup, optional
        Two ranks (default: the whole, initialised, world).

    Returns
    -------
    Sampler
        Rank 0 makes the conditional calls, rank 1 the unconditional ones; both return the
        same sample as ``sampler`` in one process.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise WorldError("CFG-parallel sampling needs a torch.distributed process group; launch "
                         "with `torchrun --nproc_per_node=2 -m world.distributed` or call "
                         "init_distributed() first.")
    size = dist.get_world_size(group)
    if size != CFG_RANKS:
        raise WorldError(f"CFG-parallel sampling splits guidance over exactly {CFG_RANKS} ranks, "
                         f"but the process group has {size}; use --nproc_per_node=2.")
    if isinstance(sampler, CFGParallelMixin):
        return sampler
    cls = type(f"CFGParallel{type(sampler).__name__}", (CFGParallelMixin, type(sampler)), {})
    copy = cls.__new__(cls)
    copy.__dict__.update(sampler.__dict__)
    copy.group = group
    return copy


def parallelize_guidance(engine, group: Any = None):
    """Make an :class:`~world.mvdt.engine.MVDTWorld` or
    :class:`~world.mvdt.pipeline.MVDTPipeline` sample CFG-parallel (in place; returns it)."""
    pipeline = getattr(engine, "pipeline", engine)
    if not isinstance(getattr(pipeline, "sampler", None), Sampler):
        raise WorldError(f"{type(engine).__name__} has no MVDT sampler to parallelise; pass an "
                         "MVDTWorld or MVDTPipeline.")
    pipeline.sampler = cfg_parallel_sampler(pipeline.sampler, group)
    return engine


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0, group: Any = None) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every rank (so randomly
    initialised models agree, whatever each rank's random state)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src, group=group)


def init_distributed(backend: str | None = None) -> tuple[int, int, str]:
    """Join the process group ``torchrun`` describes in the environment.

    Returns ``(rank, world_size, device)``: ``gloo`` and ``"cpu"`` without CUDA, ``nccl`` and
    ``"cuda:LOCAL_RANK"`` with it (unless ``backend`` says otherwise).
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise WorldError(f"The environment lacks {', '.join(missing)}; start this with "
                         "`torchrun --nproc_per_node=2 -m world.distributed ...`.")
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    device = "cpu"
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), device


# --------------------------------------------------------------------------- the launcher
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m world.distributed",
        description="Generate MVDT chunks with classifier-free guidance split over 2 ranks "
                    "(torchrun --nproc_per_node=2).")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="MVDT checkpoint folder")
    src.add_argument("--preset", default="tiny", help="random-weight MVDT preset (default tiny)")
    ap.add_argument("--init-seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--sampler", default="euler", help="euler, tts-sde or aam")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=5.0, help="CFG scale (1 = no guidance)")
    ap.add_argument("--guidance-interval", type=float, nargs=2, default=(0.0, 1.0),
                    metavar=("LOW", "HIGH"), help="noise levels at which guidance applies")
    ap.add_argument("--eta", type=float, default=None, help="SDE noise of tts-sde")
    ap.add_argument("--negative", default="null", help="null or still")
    ap.add_argument("--cache-blocks", type=int, nargs="*", default=[])
    ap.add_argument("--cache-reuse", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="scene and noise seed")
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--action", action="append", default=None,
                    help="action of each chunk, e.g. 'W →' (repeat; the last one is held)")
    ap.add_argument("--backend", default=None, help="gloo or nccl (default: by device)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per rank")
    ap.add_argument("--single", action="store_true", help="one process, no process group")
    ap.add_argument("--out", type=Path, help="rank 0 writes frames and latents here (.npz)")
    return ap


def run_world(args: argparse.Namespace, device: str = "cpu", distributed: bool = False
              ) -> dict[str, Any]:
    """Reset an MVDT world and generate ``args.chunks`` chunks; what the launcher does.

    Returns ``frames`` (N, H, W, 3) uint8 (the first frame, then every chunk's), ``latents``
    (chunks, C, F, h, w), ``seconds`` per chunk, ``model_evals`` and ``local_evals`` per chunk,
    and ``divergence`` (largest difference between the ranks' latents; 0 in one process).
    """
    from world.mvdt import MVDTModel, load_checkpoint, preset
    from world.mvdt.engine import MVDTWorld

    if args.checkpoint is not None:
        model = load_checkpoint(args.checkpoint, device=device)
    else:
        torch.manual_seed(args.init_seed)
        model = MVDTModel(preset(args.preset)).to(device)
    if distributed:
        broadcast_module(model)
    params = {"num_steps": args.steps, "guidance_scale": args.guidance,
              "guidance_interval": tuple(args.guidance_interval)}
    if args.eta is not None:
        params["eta"] = args.eta
    world = MVDTWorld(model=model, sampler=args.sampler, sampler_params=params,
                      negative=args.negative, cache_blocks=args.cache_blocks,
                      cache_reuse=args.cache_reuse, seed=args.seed, device=device)
    if distributed:
        parallelize_guidance(world)
    actions = list(args.action or ["W →"])
    frames = [world.reset(seed=args.seed).frames]
    latents, seconds, evals, local, diverge = [], [], [], [], 0.0
    sampler = world.pipeline.sampler
    generate = world.pipeline.generate_latents

    def recorded(*a, **kw):  # keep the sampler's own output (the history keeps re-encoded frames)
        out = generate(*a, **kw)
        latents.append(out.float().cpu().numpy())
        return out

    world.pipeline.generate_latents = recorded
    for i in range(args.chunks):
        t0 = time.perf_counter()
        chunk = world.step(actions[min(i, len(actions) - 1)])
        seconds.append(time.perf_counter() - t0)
        frames.append(chunk.frames)
        evals.append(sampler.num_evals)
        local.append(getattr(sampler, "local_evals", sampler.num_evals))
        diverge = max(diverge, float(getattr(sampler, "divergence", 0.0)))
    return {"frames": np.concatenate(frames), "latents": np.stack(latents),
            "seconds": np.asarray(seconds), "model_evals": np.asarray(evals),
            "local_evals": np.asarray(local), "divergence": diverge}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m world.distributed`` (under ``torchrun`` unless ``--single``)."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.single:
        rank, size = 0, 1
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        try:
            rank, size, device = init_distributed(args.backend)
        except WorldError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        result = run_world(args, device=device, distributed=not args.single)
    except WorldError as err:
        print(f"rank {rank}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if not args.single and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    if rank == 0:
        mode = "1 process" if args.single else f"CFG parallel over {size} ranks"
        per_chunk = ", ".join(f"{s * 1000:.0f}" for s in result["seconds"])
        print(f"{mode} on {device}: {args.chunks} chunks, ms per chunk [{per_chunk}], model "
              f"calls per chunk {result['model_evals'].tolist()} (this rank "
              f"{result['local_evals'].tolist()}), rank divergence {result['divergence']:.3g}")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.out, **{k: np.asarray(v) for k, v in result.items()})
    return 0


def spawn_worker(rank: int, world_size: int, port: int, argv: list[str]) -> None:
    """``torch.multiprocessing.spawn`` target: the launcher as rank ``rank`` of ``world_size``
    on loopback port ``port`` (what torchrun's environment would say)."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    code = main(argv)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
