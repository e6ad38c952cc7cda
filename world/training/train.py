"""Training loop of the MVDT world model on sandbox clips (``yume world train``).

A run is described by a JSON config (a stage of a recipe, ``world/recipes/*.json`` and
:mod:`world.training.recipe`, or a file such as ``world/configs/tiny.json``; see
:class:`TrainConfig`). It
generates its data when missing, trains with AdamW + EMA on the core's
:func:`world.mvdt.training_loss`, and writes under ``run_dir``:

- ``last/``: the resumable state, rewritten every ``save_every_minutes``: ``model.safetensors``
  (raw weights), ``ema.safetensors``, ``optimizer.safetensors`` (AdamW moments, flattened),
  ``state.json`` (step, elapsed time, RNG seeds, data cursor) and ``config.json`` (MVDT config);
- ``checkpoint/``: the EMA model as a shippable MVDT checkpoint (safetensors + config.json);
- ``log.jsonl``: one JSON object per logged step; ``loss.png``: the loss curve.

Re-running the same command resumes from ``last/`` (the step counter continues) until
``max_steps`` or ``max_minutes`` of training in total are reached. Nothing is unpickled: every
tensor file is safetensors and every scalar JSON.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from control.actions import ROTATIONS, TRANSLATIONS, Action
from world.base import WorldError
from world.device import torch_device
from world.training.data import ClipDataset, read_index, write_dataset

logger = logging.getLogger(__name__)


class TrainError(WorldError):
    """A training config or run folder that cannot be used."""


@dataclass
class DataConfig:
    """Where the clips live and how to make them when missing (see :mod:`world.training.data`).

    ``extra_train_dirs`` are further clip folders (``yume world data``) trained on together with
    ``train_dir``; they are never generated here.
    """

    train_dir: str = "runs/world/data/sandbox-64-train"
    heldout_dir: str = "runs/world/data/sandbox-64-heldout"
    train_clips: int = 256
    heldout_clips: int = 32
    chunks_per_clip: int = 16
    resolution: int = 64
    seed: int = 0
    extra_train_dirs: list = field(default_factory=list)


@dataclass
class TrainConfig:
    """One training run.

    Parameters
    ----------
    name : str
        Run name (used in logs).
    run_dir : str
        Folder of the run's checkpoints and logs.
    model : dict
        ``{"preset": NAME, **overrides}`` or a full :class:`~world.mvdt.MVDTConfig` dict.
    data : dict
        :class:`DataConfig` fields.
    batch_size, lr, weight_decay, warmup_steps, grad_clip : training hyper-parameters.
    ema_decay : float
        Exponential moving average of the weights (the EMA model is the one shipped).
    decay_fraction, final_lr_ratio : float
        The learning rate decays linearly to ``final_lr_ratio * lr`` over the last
        ``decay_fraction`` of the ``max_minutes`` budget (0 = constant after warm-up).
    max_steps, max_minutes : budget; training stops at whichever comes first (totals over
        resumes).
    save_every_minutes : float
        How often ``last/`` and ``checkpoint/`` are rewritten.
    log_every : int
        Steps between log lines.
    init_from : str
        Checkpoint folder (or run folder's ``checkpoint/``) whose weights start a new run: every
        parameter of the same name and shape is copied, parameters the checkpoint lacks (such as
        a newly added refiner) keep their initialisation. Ignored when resuming.
    threads : int
        ``torch.set_num_threads`` (the dev machine has 2 shared cores: 1 leaves one free).
    device : str
        Torch device of the run (``"cpu"``, ``"cuda"``); clips are kept and encoded there too.
    amp : bool
        bfloat16 autocast of the forward passes (weights and the loss stay float32). For large
        configs; the small sandbox model trains 2.5x slower with it on an H100 (BENCHMARKS.md).
    self_history : float
        Fraction of batches whose newest history chunks are the model's own samples
        (:func:`world.mvdt.training.self_generated_history`; 0 = clean clips only).
    self_history_chunks : int
        How many of the newest history chunks are replaced in such a batch.
    self_history_sampler : dict
        The sampler that makes them, as in a checkpoint's ``sampler.json``
        (``{"name", "params", "negative"}``); it drives the EMA weights.
    motion_critic : str
        Folder of an inverse-dynamics model (``yume world idm``) used as a training critic:
        the unmasked pass's clean-chunk estimate must move like the true chunk in its eyes
        (:func:`world.training.idm.motion_kl`). Train it apart from the evaluating IDM (``--seed``,
        other clips). Empty = no motion loss.
    motion_weight : float
        Weight of that loss (0 = off).
    balance_actions : float
        How strongly training batches even out the translation keys (``ChunkSampler``'s
        ``balance``; 0 = as the clips have them). Held-out batches stay as the clips are.
    mirror : bool
        Left-right mirrored examples with mirrored actions (``ChunkSampler``'s ``mirror``).
    seed : int
        Seed of model initialisation and batch sampling.
    warp_lr_scale : float
        Learning-rate multiplier of the geometric-memory parameters (names containing
        ``warp`` or the refiner's ``gate``): they start at zero on a warm start and must move
        far in a short CPU run while the rest is only fine-tuned.
    own_rollout : float
        Fraction of batches whose whole history (after the true start frame) is the EMA
        model's own rollout of the clip's actions, target still the true chunk
        (:mod:`world.training.self_forcing`; 0 = teacher forcing only).
    own_rollout_chunks : int
        Largest chunk position of such a batch (its rollout generates that many chunks).
    own_rollout_sampler : dict
        Sampler of the rollout as in ``sampler.json``; empty = the ``sampler.json`` of
        ``init_from``, else the shipped checkpoint's.
    warp_depth : str
        Folder of a learned memory depth (:mod:`world.mvdt.depth`, e.g.
        ``world/checkpoints/mvdt-warp/depth``): the geometric memory of every batch is warped
        with it, as the engine warps at run time, and it is copied into the run's checkpoint
        (``depth/``). Empty = the fixed depth prior.
    """

    name: str = "sandbox-64"
    run_dir: str = "runs/world/sandbox-64"
    model: dict = field(default_factory=lambda: {"preset": "small"})
    data: dict = field(default_factory=dict)
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    decay_fraction: float = 0.0
    final_lr_ratio: float = 0.1
    max_steps: int = 100_000
    max_minutes: float = 60.0
    save_every_minutes: float = 5.0
    log_every: int = 10
    threads: int = 1
    device: str = "cpu"
    amp: bool = False
    self_history: float = 0.0
    self_history_chunks: int = 1
    self_history_sampler: dict = field(default_factory=lambda: {
        "name": "euler", "params": {"num_steps": 4, "shift": 1.0}})
    motion_critic: str = ""
    motion_weight: float = 0.0
    balance_actions: float = 0.0
    mirror: bool = False
    seed: int = 0
    init_from: str = ""
    warp_lr_scale: float = 1.0
    own_rollout: float = 0.0
    own_rollout_chunks: int = 8
    own_rollout_sampler: dict = field(default_factory=dict)
    warp_depth: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainError(f"Training config has unknown keys {unknown}; remove or rename them.")
        cfg = cls(**data)
        DataConfig(**cfg.data)  # validate the data keys early
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"No training config at {path}; see world/configs/tiny.json for "
                             "an example, or train with a recipe (world/recipes/).")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise TrainError(f"{path} is not valid JSON ({err}); fix the file.") from err
        except TypeError as err:
            raise TrainError(f"{path} has a bad value ({err}); fix the file.") from err

    @property
    def data_config(self) -> DataConfig:
        return DataConfig(**self.data)


# --------------------------------------------------------------------------- model config
def build_model_config(cfg: TrainConfig):
    """The MVDT config of a run: a preset with overrides, or a full config dict."""
    from world.mvdt.config import MVDTConfig, preset

    spec = dict(cfg.model)
    name = spec.pop("preset", None)
    return preset(name, **spec) if name else MVDTConfig.from_dict(spec)


def ensure_data(cfg: TrainConfig, frames_per_step: int, progress: bool = True) -> None:
    """Generate the run's train and held-out clips if they are not on disk yet."""
    d = cfg.data_config
    for split, folder, n in (("train", d.train_dir, d.train_clips),
                             ("heldout", d.heldout_dir, d.heldout_clips)):
        path = Path(folder)
        if (path / "index.json").is_file():
            index = read_index(path)
            if (index["frames_per_step"], index["height"]) != (frames_per_step, d.resolution):
                raise TrainError(
                    f"The clips in {path} have {index['frames_per_step']} frames per step at "
                    f"{index['height']} px, the model needs {frames_per_step} at "
                    f"{d.resolution} px; delete the folder to regenerate it."
                )
            continue
        logger.info("generating %d %s clips in %s", n, split, path)
        write_dataset(path, n, d.resolution, d.chunks_per_clip, frames_per_step, split=split,
                      seed=d.seed, progress=progress)
    for folder in d.extra_train_dirs:
        if not (Path(folder) / "index.json").is_file():
            raise TrainError(f"No clips in {folder} (listed in extra_train_dirs); make them with "
                             "'yume world data' or remove the entry.")


# --------------------------------------------------------------------------- batches
class ChunkSampler:
    """Random (history, chunk, action) training examples from clips held in memory.

    Every example of a batch uses the same chunk position ``k`` (so the same history length),
    which keeps tensors rectangular; ``k`` is drawn uniformly, so short and long histories are
    both trained. Frames stay uint8 in memory and are encoded per batch; history frames that
    the model's memory schedule would drop are not encoded at all.

    Parameters
    ----------
    frames : tensor (N, T, H, W, 3) uint8
    actions : tensor (N, chunks) int64
    frames_per_step : int
    codec : object
        ``encode(uint8 (n, H, W, 3)) -> (C, n, h, w)`` (the core's codec protocol).
    max_history : int, optional
        Recent history frames kept besides the first (the model's ``max_history_frames``).
    seed : int
    balance : float
        0 draws clips uniformly; ``b > 0`` weights a clip by ``frequency ** -b`` of the
        translation key it holds at the drawn chunk (1 = every key equally often), so rare
        motions (walking backwards, diagonals) are not drowned by walking forward.
    mirror : bool
        Flip half of the examples left-right, with their actions mirrored
        (:meth:`~control.actions.Action.mirrored`): twice the walks, and "W+A" and "W+D"
        learnt as one motion.
    """

    def __init__(self, frames: torch.Tensor, actions: torch.Tensor, frames_per_step: int,
                 codec, max_history: int | None = None, seed: int = 0,
                 balance: float = 0.0, mirror: bool = False, model_config=None,
                 depth_model=None) -> None:
        self.frames, self.actions, self.codec = frames, actions, codec
        # A model with geometric memory gets its warp conditioning in every batch.
        self.warp_config = (model_config if model_config is not None
                            and getattr(model_config, "warp_sources", None) else None)
        self._warp = None
        if self.warp_config is not None:
            from world.mvdt.warp import camera_warp

            self._warp = camera_warp(self.warp_config)
            if depth_model is not None:  # warp as the engine does with a learned depth
                from world.mvdt.depth import DepthWarp

                self._warp = DepthWarp(self._warp, depth_model)
        self.fps = frames_per_step
        self.max_history = max_history
        self.gen = torch.Generator().manual_seed(seed)
        self.mirror = bool(mirror)
        self._mirrored = torch.tensor([Action.from_index(i).mirrored().index for i in range(
            len(TRANSLATIONS) * len(ROTATIONS))]) if self.mirror else None
        self.weights = None
        if balance > 0:
            keys = actions // len(ROTATIONS)  # action indices are translation-major
            freq = torch.bincount(keys.reshape(-1), minlength=len(TRANSLATIONS)).double()
            self.weights = (freq / freq.sum()).clamp_min(1e-12)[keys].pow(-float(balance))

    def state(self) -> dict:
        return {"rng": self.gen.get_state().tolist()}

    def load_state(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["rng"], dtype=torch.uint8))

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        space = getattr(self.codec, "space", None)  # a batched latent space: one call, any device
        if space is not None:
            return space.encode(frames)
        return torch.stack([self.codec.encode(f.numpy()) for f in frames])

    def sample(self, batch: int, chunk: int | None = None,
               history_source=None) -> dict[str, Any]:
        """A batch at a random chunk position, or at ``chunk``; ``history_source(clips,
        actions, k)`` (:class:`world.training.self_forcing.RolloutHistory`) may replace the
        history frames before they are encoded."""
        n, chunks = self.actions.shape
        if self.weights is None:
            idx = torch.randint(n, (batch,), generator=self.gen)
            k = int(torch.randint(chunks, (1,), generator=self.gen)) if chunk is None else chunk
        else:
            k = int(torch.randint(chunks, (1,), generator=self.gen)) if chunk is None else chunk
            idx = torch.multinomial(self.weights[:, k], batch, replacement=True,
                                    generator=self.gen)
        start = 1 + k * self.fps
        hist_idx = list(range(start))
        if self.max_history is not None and start > 1 + self.max_history:
            hist_idx = [0, *range(start - self.max_history, start)]
        clips, actions = self.frames[idx.to(self.frames.device)], self.actions[idx]
        if self.mirror:
            flip = torch.rand(batch, generator=self.gen) < 0.5
            clips = torch.where(flip.reshape(-1, 1, 1, 1, 1).to(clips.device), clips.flip(3),
                                clips)
            actions = torch.where(flip[:, None], self._mirrored[actions], actions)
        if history_source is not None and k > 0:
            clips = history_source(clips, actions, k)  # self-forcing: generated history
        out = {
            "history": self._encode(clips[:, hist_idx]),
            "target": self._encode(clips[:, start:start + self.fps]),
            "actions": [Action.from_index(int(a)) for a in actions[:, k]],
            "history_actions": actions[:, :k],
        }
        if self.warp_config is not None:
            out["warp"] = self._warp_condition(clips, actions, k, start)
        return out

    def _warp_condition(self, clips: torch.Tensor, actions: torch.Tensor, k: int,
                        start: int) -> torch.Tensor:
        """Geometric memory of chunk ``k``: the start frame and the frame before the chunk,
        seen from their *commanded* cameras (as at run time), warped into the chunk's."""
        from control.motion import CameraState
        from world.mvdt.warp import chunk_states, warp_condition

        states, targets = [], []
        for row in actions[:, :k + 1].tolist():
            cams, s = [CameraState()], CameraState()
            for a in row:
                cams += chunk_states(s, Action.from_index(int(a)), self.fps)
                s = cams[-1]
            states.append(cams)  # cams[i]: camera of frame i of the clip
            targets.append(cams[start:start + self.fps])
        sources = {"first": (clips[:, 0].cpu().numpy(), [c[0] for c in states]),
                   "last": (clips[:, start - 1].cpu().numpy(), [c[start - 1] for c in states])}
        return warp_condition(self.warp_config, self.codec, self._warp, sources, targets).to(
            clips.device)


def _warp_depth_model(cfg: TrainConfig, model_config):
    """The learned memory depth of ``cfg.warp_depth`` (None when empty), checked early."""
    if not cfg.warp_depth:
        return None
    if not getattr(model_config, "warp_sources", None):
        raise TrainError("warp_depth is set but the model has no geometric memory "
                         "(model.warp_sources); set both or neither.")
    from world.mvdt.depth import load_depth_model

    try:
        return load_depth_model(cfg.warp_depth)
    except FileNotFoundError as err:
        raise TrainError(str(err)) from err


def make_sampler(dataset: ClipDataset | list[ClipDataset], codec, model_config, seed: int = 0,
                 device: str | torch.device = "cpu", balance: float = 0.0,
                 mirror: bool = False, depth_model=None) -> ChunkSampler:
    """A :class:`ChunkSampler` over every clip of ``dataset`` (or several) for a model config;
    ``depth_model`` (:class:`world.mvdt.depth.DepthNet`) warps its geometric memory."""
    sets = dataset if isinstance(dataset, list) else [dataset]
    shapes = {(d.frames_per_step, d.chunks_per_clip, d.height, d.width) for d in sets}
    if len(shapes) != 1:
        raise TrainError("The training clip folders differ in frames per step, clip length or "
                         "frame size; use folders made with the same settings.")
    frames = torch.cat([d.all_frames() for d in sets]).to(device)
    actions = torch.cat([d.all_actions() for d in sets])
    return ChunkSampler(frames, actions, sets[0].frames_per_step, codec,
                        model_config.max_history_frames, seed, balance, mirror, model_config,
                        depth_model)


# --------------------------------------------------------------------------- state files
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW state as flat tensors (safetensors) plus JSON scalars."""
    tensors, scalars = {}, {}
    for i, (_, st) in enumerate(sorted(opt.state_dict()["state"].items())):
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{i}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{i}.{key}"] = value
    return tensors, scalars


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, scalars: dict) -> None:
    sd = opt.state_dict()
    n = len(sd["param_groups"][0]["params"]) if len(sd["param_groups"]) == 1 else None
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(scalars.items()):
        i, key = name.split(".", 1)
        state.setdefault(int(i), {})[key] = value
    if n is not None and state and max(state) >= n:
        raise TrainError("The saved optimizer state does not match the model; start a new run.")
    sd["state"] = state
    opt.load_state_dict(sd)


def save_state(directory: Path, model, ema, opt, state: dict, model_config) -> None:
    """Write the resumable state atomically (to a temp folder, then rename)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()},
              str(tmp / "ema.safetensors"))
    tensors, scalars = _optimizer_tensors(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer_scalars": scalars}))
    model_config.save(tmp / "config.json")
    _swap_in(tmp, directory)


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace folder ``dest`` by the finished folder ``tmp``; an interrupted swap leaves the
    previous version at ``dest.old``, never a half-written ``dest``."""
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- plot
def plot_loss(log_path: str | Path, out_png: str | Path, title: str = "MVDT training") -> None:
    """Loss (and smoothed loss) against step from a ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rows = [r for r in every if "loss" in r]
    if not rows:
        return
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.6, alpha=0.4, label="loss")
    if len(loss) > 10:
        k = max(len(loss) // 30, 3)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    held = [r for r in every if "heldout_loss" in r]
    if held:
        ax.plot([r["step"] for r in held], [r["heldout_loss"] for r in held], "o-",
                ms=3, label="held-out loss (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


# --------------------------------------------------------------------------- training
def _lr_at(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warm-up, constant, then (time-budgeted runs) linear decay over the last
    ``decay_fraction`` of ``max_minutes`` down to ``final_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay_fraction > 0:
        budget = cfg.max_minutes * 60.0
        start = budget * (1.0 - cfg.decay_fraction)
        if elapsed > start:
            frac = min((elapsed - start) / (budget - start), 1.0)
            return cfg.lr * (1.0 - frac * (1.0 - cfg.final_lr_ratio))
    return cfg.lr


@torch.no_grad()
def _ema_update(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


@torch.no_grad()
def heldout_loss(model, sampler: ChunkSampler, batches: int = 4, batch_size: int = 8,
                 seed: int = 1234) -> float:
    """Mean training loss of ``model`` on fixed held-out batches (same noise every call)."""
    from world.mvdt.training import training_loss

    state = sampler.gen.get_state()
    sampler.gen.manual_seed(seed)
    cpu_state = torch.get_rng_state()
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    values = [float(training_loss(model, sampler.sample(batch_size))[0]) for _ in range(batches)]
    model.train(was_training)
    torch.set_rng_state(cpu_state)
    sampler.gen.set_state(state)
    return float(np.mean(values))


def load_motion_critic(folder: str | Path, codec, model_config, device: torch.device):
    """``critic(before, target, generated)`` on latent frames, from an IDM folder."""
    from world.training.idm import InverseDynamics, motion_kl

    idm = InverseDynamics.load(folder)
    if (idm.config.height, idm.config.width) != (model_config.frame_height,
                                                 model_config.frame_width):
        raise TrainError(
            f"The motion critic in {folder} reads {idm.config.height}x{idm.config.width} frames "
            f"but the model makes {model_config.frame_height}x{model_config.frame_width}; "
            "train a critic on clips of the model's size."
        )
    idm.requires_grad_(False)
    idm.to(device)
    space = getattr(codec, "space", None)
    if space is None:
        raise TrainError("The motion critic needs the project's latent spaces (world.vae) to "
                         "decode latents to frames; install the full project.")

    def critic(before: torch.Tensor, target: torch.Tensor, generated: torch.Tensor):
        frames = (space.decode_unit(z.unsqueeze(2))[:, :, 0] for z in (before, target, generated))
        return motion_kl(idm, *frames)

    return critic


def _param_groups(model, warp_lr_scale: float = 1.0) -> list[dict]:
    """AdamW parameter groups: everything, or the rest then the geometric memory's parameters
    (a fixed order by name, so a resumed run rebuilds the same groups)."""
    def is_warp(name: str) -> bool:
        return "warp" in name or name.startswith("refiner.gate")

    named = list(model.named_parameters())
    memory = [p for n, p in named if is_warp(n)]
    if warp_lr_scale == 1.0 or not memory:
        return [{"params": [p for _, p in named], "lr_scale": 1.0}]
    return [{"params": [p for n, p in named if not is_warp(n)], "lr_scale": 1.0},
            {"params": memory, "lr_scale": float(warp_lr_scale)}]


def warm_start(model, checkpoint_dir: str | Path) -> list[str]:
    """Copy the weights of a checkpoint into ``model`` where names and shapes match.

    Returns the names of the parameters left at their initialisation. A checkpoint that shares
    nothing with the model, or has a parameter of another shape, raises :class:`TrainError`.
    """
    path = Path(checkpoint_dir) / "model.safetensors"
    if not path.is_file():
        raise TrainError(f"No model.safetensors in {checkpoint_dir} to start from; train the "
                         "earlier stage first or clear init_from.")
    try:
        weights = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise TrainError(f"Cannot read {path} ({err}); the file is damaged.") from err
    own = model.state_dict()
    bad = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    shared = [k for k in weights if k in own]
    if bad or not shared:
        why = f"shapes differ for {', '.join(bad[:3])}" if bad else "no shared weights"
        raise TrainError(f"The checkpoint in {checkpoint_dir} is of another architecture "
                         f"({why}); start from a matching one.")
    model.load_state_dict({k: weights[k].to(own[k].dtype) for k in shared}, strict=False)
    fresh = [k for k in own if k not in weights]
    logger.info("warm start from %s: %d tensors copied, %d new", checkpoint_dir, len(shared),
                len(fresh))
    return fresh


def train(config: TrainConfig | str | Path, progress: bool = True,
          max_steps: int | None = None, session_minutes: float | None = None) -> Path:
    """Run (or resume) training; returns the shippable checkpoint folder.

    Parameters
    ----------
    config : TrainConfig or path to its JSON
        The run.
    progress : bool
        tqdm progress bar.
    max_steps : int, optional
        Override of ``config.max_steps`` (e.g. for a quick check).
    session_minutes : float, optional
        Stop this call (with a checkpoint) after this many minutes of training, leaving the run's
        budget and learning-rate schedule as they are; the next call resumes. For machines lent
        for a limited time.
    """
    from world.mvdt import MVDTModel as MVDT
    from world.mvdt import codec_from_config, training_loss
    from world.mvdt.training import self_generated_history

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.load(config)
    if max_steps is not None:
        cfg.max_steps = int(max_steps)
    torch.set_num_threads(max(1, int(cfg.threads)))
    device = torch_device(cfg.device)  # before any clips are made or read
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    last, ckpt_dir = run / "last", run / "checkpoint"
    resume = (last / "state.json").is_file()

    if resume:
        from world.mvdt.config import MVDTConfig

        model_config = MVDTConfig.load(last / "config.json")
    else:
        model_config = build_model_config(cfg)
    ensure_data(cfg, model_config.frames_per_chunk, progress)
    train_sets = [ClipDataset(p) for p in (cfg.data_config.train_dir,
                                           *cfg.data_config.extra_train_dirs)]
    train_set = train_sets[0]
    held_set = ClipDataset(cfg.data_config.heldout_dir)
    if (train_set.height, train_set.width) != (model_config.frame_height,
                                               model_config.frame_width):
        raise TrainError(
            f"The clips are {train_set.height}x{train_set.width} but the model makes "
            f"{model_config.frame_height}x{model_config.frame_width} frames; fix the config."
        )
    codec = codec_from_config(model_config.codec)
    depth_model = _warp_depth_model(cfg, model_config)
    sampler = make_sampler(train_sets, codec, model_config, cfg.seed, device,
                           cfg.balance_actions, cfg.mirror, depth_model)
    held_sampler = make_sampler(held_set, codec, model_config, cfg.seed + 1, device,
                                depth_model=depth_model)
    channels = sampler.sample(1)["target"].shape[1]
    if channels != model_config.latent_channels:
        raise TrainError(
            f"The codec {model_config.codec} gives {channels} latent channels but the "
            f"model expects {model_config.latent_channels}; fix latent_channels in the config."
        )

    torch.manual_seed(cfg.seed)
    model = MVDT(model_config)
    if cfg.init_from and not resume:
        warm_start(model, cfg.init_from)
    model.to(device)
    ema = MVDT(model_config).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(_param_groups(model, cfg.warp_lr_scale), lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    state = {"step": 0, "elapsed": 0.0, "best_heldout": math.inf}
    if resume:
        model.load_state_dict(load_file(str(last / "model.safetensors"), device=str(device)))
        ema.load_state_dict(load_file(str(last / "ema.safetensors"), device=str(device)))
        saved = json.loads((last / "state.json").read_text())
        _load_optimizer(opt, load_file(str(last / "optimizer.safetensors")),
                        saved.pop("optimizer_scalars", {}))
        sampler.load_state(saved.pop("sampler"))
        torch.manual_seed(cfg.seed + int(saved["step"]))
        state.update(saved)
        logger.info("resuming %s at step %d", run, state["step"])

    log_path = run / "log.jsonl"
    n_params = sum(p.numel() for p in model.parameters())
    with log_path.open("a") as log:
        log.write(json.dumps({"event": "start", "step": state["step"], "params": n_params,
                              "resume": resume, "time": time.time()}) + "\n")
    budget_s = cfg.max_minutes * 60.0
    session_s = math.inf if session_minutes is None else float(session_minutes) * 60.0
    t_session = time.perf_counter()
    t_start = t_session - state["elapsed"]
    last_save = time.perf_counter()
    self_pipe = None
    if cfg.self_history > 0:
        from world.mvdt import MVDTPipeline
        from world.mvdt.pipeline import split_sampler_spec

        try:
            name, params, negative = split_sampler_spec(cfg.self_history_sampler)
            self_pipe = MVDTPipeline(ema, None, name, negative=negative, **params)
        except (WorldError, AttributeError, TypeError, ValueError) as err:
            raise TrainError(f"self_history_sampler is not a usable sampler spec ({err}); write "
                             'it as {"name": "euler", "params": {"num_steps": 4}}.') from err
    roller = None
    if cfg.own_rollout > 0:
        from world.training.self_forcing import RolloutHistory, rollout_sampler_spec

        roller = RolloutHistory(ema, codec, rollout_sampler_spec(cfg.own_rollout_sampler,
                                                                 cfg.init_from),
                                cfg.own_rollout, cfg.own_rollout_chunks, cfg.seed, depth_model)
    critic = (load_motion_critic(cfg.motion_critic, codec, model_config, device)
              if cfg.motion_critic and cfg.motion_weight > 0 else None)
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=cfg.name, disable=not progress)
    model.train()
    running, ok, n_own = [], True, 0

    def checkpoint() -> None:
        state["elapsed"] = time.perf_counter() - t_start
        h = heldout_loss(ema, held_sampler, batch_size=cfg.batch_size)
        state["last_heldout"] = h
        state["best_heldout"] = min(state.get("best_heldout", math.inf), h)
        with log_path.open("a") as log:
            log.write(json.dumps({"step": state["step"], "heldout_loss": h,
                                  "elapsed": state["elapsed"]}) + "\n")
        save_state(last, model, ema, opt, {**state, "sampler": sampler.state()}, model_config)
        save_checkpoint(ema, ckpt_dir)
        if depth_model is not None and not (ckpt_dir / "depth").is_dir():
            # Once: the checkpoint warps at run time as it trained.
            shutil.copytree(cfg.warp_depth, ckpt_dir / "depth")
        _write_meta(ckpt_dir, cfg, state, n_params)
        plot_loss(log_path, run / "loss.png", f"{cfg.name}: {n_params / 1e6:.2f} M params")

    try:
        while (state["step"] < cfg.max_steps and time.perf_counter() - t_start < budget_s
               and time.perf_counter() - t_session < session_s):
            for g in opt.param_groups:
                g["lr"] = g.get("lr_scale", 1.0) * _lr_at(state["step"], cfg,
                                                          time.perf_counter() - t_start)
            k_own = roller.plan(state["step"], sampler.actions.shape[1]) if roller else None
            batch = sampler.sample(cfg.batch_size, k_own, roller if k_own else None)
            n_own += k_own is not None
            if self_pipe is not None:
                # Seeded by the step, so a resumed run makes the same choices.
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state["step"])
                if float(torch.rand(1, generator=g)) < cfg.self_history:
                    batch["history"] = self_generated_history(
                        self_pipe, batch["history"], batch["history_actions"],
                        cfg.self_history_chunks, g)
            with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp):
                loss, parts = training_loss(model, batch, motion_critic=critic,
                                            motion_weight=cfg.motion_weight)
            if not torch.isfinite(loss):
                ok = False
                logger.error("loss became %s at step %d; stopping", float(loss), state["step"])
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            _ema_update(ema, model, cfg.ema_decay if state["step"] > cfg.warmup_steps else 0.9)
            state["step"] += 1
            running.append(float(loss.detach()))
            bar.update(1)
            if state["step"] % cfg.log_every == 0:
                row = {"step": state["step"], "loss": float(np.mean(running)),
                       "loss_masked": parts.get("loss_masked"),
                       "loss_motion": parts.get("loss_motion"),
                       "grad_norm": float(gnorm), "lr": opt.param_groups[0]["lr"],
                       "elapsed": time.perf_counter() - t_start}
                if roller is not None:
                    row["own_rollout_batches"] = n_own
                running, n_own = [], 0
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                with log_path.open("a") as log:
                    log.write(json.dumps(row) + "\n")
            if time.perf_counter() - last_save > cfg.save_every_minutes * 60:
                checkpoint()
                last_save = time.perf_counter()
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: keep every step done so far, then stop
        bar.close()
        checkpoint()
        logger.warning("interrupted at step %d; the checkpoint is saved, run again to resume",
                       state["step"])
        raise
    bar.close()
    if ok:
        checkpoint()
    return ckpt_dir


def save_checkpoint(model, directory: str | Path) -> Path:
    """Write ``model`` as a shippable MVDT checkpoint (safetensors + config.json)."""
    from world.mvdt import save_checkpoint as core_save

    # float16 halves the shipped size; inference casts back to float32 on load.
    return core_save(model, directory, dtype=torch.float16)


def _write_meta(ckpt_dir: Path, cfg: TrainConfig, state: dict, n_params: int) -> None:
    meta = {"run": cfg.name, "step": state["step"], "train_seconds": state["elapsed"],
            "heldout_loss": state.get("last_heldout"), "params": n_params,
            "train_config": asdict(cfg)}
    (ckpt_dir / "training.json").write_text(json.dumps(meta, indent=1))


def _stage_logs(folder: Path) -> list[Path]:
    """The stage logs an exported checkpoint ships, newest first."""
    logs = [folder / "training_log.jsonl", folder / "training_log_init.jsonl"]
    k = 2
    while (folder / f"training_log_init{k}.jsonl").is_file():
        logs.append(folder / f"training_log_init{k}.jsonl")
        k += 1
    return [p for p in logs if p.is_file()]


def _earlier_stages(meta: dict, limit: int = 16) -> list[Path]:
    """Logs of the stages a run was warm-started from, newest first, following ``init_from``
    back through run folders; an exported checkpoint (such as the shipped one) contributes the
    stage logs it ships. A log met twice is kept once: an ``init_from`` folder that was later
    overwritten by an export of a newer stage would otherwise repeat that stage."""
    stages: list[Path] = []
    init = meta.get("train_config", {}).get("init_from") or ""
    while init and len(stages) < limit:
        if (Path(init) / "training_log.jsonl").is_file():
            stages += _stage_logs(Path(init))
            break
        run = Path(init).parent
        if not (run / "log.jsonl").is_file():
            break
        stages.append(run / "log.jsonl")
        info = Path(init) / "training.json"
        init = (json.loads(info.read_text()).get("train_config", {}).get("init_from") or ""
                if info.is_file() else "")
    unique, seen = [], set()
    for path in stages:
        text = path.read_bytes()
        if text not in seen:
            seen.add(text)
            unique.append(path)
    return unique[:limit]


def _with_warp_trust(config, trust):
    """``config`` with :attr:`~world.mvdt.MVDTConfig.warp_trust` set, refused in one sentence
    when ``trust`` is not a finite number."""
    from dataclasses import replace

    try:
        return replace(config, warp_trust=float(trust))
    except (TypeError, ValueError, WorldError) as err:
        raise TrainError(f"warp_trust must be a finite number, not {trust!r}.") from err


def export_checkpoint(run_dir: str | Path, dest: str | Path, idm_dir: str | Path | None = None,
                      sampler: dict | None = None, weights: str = "ema",
                      training_log: str | Path | None = None,
                      warp_trust: float | None = None) -> Path:
    """Copy a run's shippable files into ``dest``.

    ``dest`` receives the EMA checkpoint (``model.safetensors``, ``config.json``,
    ``training.json``), the run's ``log.jsonl`` (as ``training_log.jsonl``; a warm-started run
    adds the logs of the stages it grew from, newest first, as ``training_log_init.jsonl``,
    ``training_log_init2.jsonl``, ...) and ``loss.png``,
    optionally the IDM (``idm/``) and a ``sampler.json`` (``{"name", "params", "negative"}``)
    naming the recommended sampler. The copy is made in a temporary folder and swapped in.
    ``weights="raw"`` ships the last raw (non-EMA) weights of ``last/`` instead, for runs too
    short for the EMA to catch up. ``training_log`` (a recipe's one log of every stage, see
    :mod:`world.training.recipe`) is shipped as ``training_log.jsonl`` instead of the per-stage
    logs. ``warp_trust`` sets the shipped config's :attr:`~world.mvdt.MVDTConfig.warp_trust`
    (an inference setting chosen on fresh scenes after training; the weights are re-saved so
    their config hash matches).
    """
    from world.mvdt import MVDTConfig, MVDTModel, load_checkpoint

    run, dest = Path(run_dir), Path(dest)
    ckpt = run / "checkpoint"
    ema = load_checkpoint(ckpt)  # refuse to ship something that does not load
    if weights not in ("ema", "raw"):
        raise TrainError(f"weights must be 'ema' or 'raw', not {weights!r}.")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "training.json"):
        shutil.copy2(ckpt / name, tmp / name)
    if weights == "raw" or warp_trust is not None:
        # Other weights or another config: written anew, so the config hash matches.
        config = ema.config if weights == "ema" else MVDTConfig.load(run / "last" / "config.json")
        if warp_trust is not None:
            config = _with_warp_trust(config, warp_trust)
        model = MVDTModel(config)
        model.load_state_dict(ema.state_dict() if weights == "ema"
                              else load_file(str(run / "last" / "model.safetensors")))
        save_checkpoint(model, tmp)
    meta = json.loads((tmp / "training.json").read_text())
    meta["weights"] = weights
    (tmp / "training.json").write_text(json.dumps(meta, indent=1))
    title = f"{meta.get('run', run.name)}: {meta.get('params', 0) / 1e6:.2f} M params"
    if training_log is not None:
        if not Path(training_log).is_file():
            raise TrainError(f"No training log at {training_log}; run the recipe's training "
                             "stages first.")
        shutil.copy2(training_log, tmp / "training_log.jsonl")
        plot_loss(training_log, tmp / "loss.png", title)
    else:
        for k, stage_log in enumerate(_earlier_stages(meta)):
            # A warm-started run ships the logs of the stages it grew from too (newest first).
            shutil.copy2(stage_log, tmp / f"training_log_init{k + 1 if k else ''}.jsonl")
        if (run / "log.jsonl").is_file():
            shutil.copy2(run / "log.jsonl", tmp / "training_log.jsonl")
            plot_loss(run / "log.jsonl", tmp / "loss.png", title)
    if idm_dir is not None:
        shutil.copytree(idm_dir, tmp / "idm")
    elif (dest / "idm").is_dir():
        shutil.copytree(dest / "idm", tmp / "idm")
    if (ckpt / "depth").is_dir():  # trained with a learned memory depth: it ships with it
        shutil.copytree(ckpt / "depth", tmp / "depth")
    elif (dest / "depth").is_dir():
        shutil.copytree(dest / "depth", tmp / "depth")
    if sampler is not None:
        (tmp / "sampler.json").write_text(json.dumps(sampler, indent=1))
    elif (dest / "sampler.json").is_file():
        shutil.copy2(dest / "sampler.json", tmp / "sampler.json")
    _swap_in(tmp, dest)
    return dest
