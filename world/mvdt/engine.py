"""``MVDTWorld``: the MVDT video model behind the :class:`~world.base.WorldEngine` interface.

A world starts from any RGB image (resized and centre-cropped to the model's resolution), from
a video clip (its frames become the compressed history, the last one is shown first) or from
a sandbox scene seed (its first frame is rendered by the procedural sandbox), then each
``step(action)`` samples the next chunk conditioned on the bounded, compressed history. The
poses returned are the ones the action asks for (``control.motion.apply_action``), since a
generative model has no measured camera.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from control.actions import IDLE, Action, ActionError, parse_action
from control.motion import CameraState, MotionStep, apply_action
from world.base import Chunk, WorldEngine, WorldError, check_resolution, check_start
from world.images import fit_image as prepare_image  # the name this package always exported
from world.mvdt.cache import ResidualCache
from world.mvdt.checkpoint import DEFAULT_CHECKPOINT
from world.mvdt.memory import HistoryBuffer, history_token_count
from world.mvdt.model import MVDTModel, load_checkpoint
from world.mvdt.pipeline import MVDTPipeline, codec_from_config, split_sampler_spec
from world.sandbox import SandboxWorld

logger = logging.getLogger(__name__)

# Optional: the recommended sampler of a checkpoint, {"name", "params", "negative"}.
SAMPLER_FILE = "sampler.json"


def read_sampler_spec(ckpt_dir: str | Path | None) -> tuple[str, dict[str, Any], str]:
    """The recommended sampler of a checkpoint folder (its ``sampler.json``).

    Returns ``(name, params, negative)``: the sampler's registry name and parameters, and what
    its guidance pushes away from (:func:`world.mvdt.pipeline.negative_actions`);
    ``("euler", {}, "null")`` when the folder has none.
    """
    path = Path(ckpt_dir) / SAMPLER_FILE if ckpt_dir is not None else None
    if path is not None and path.is_file():
        try:
            return split_sampler_spec(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as err:
            raise WorldError(f"{path} is not a valid sampler file ({err}); fix or delete "
                             "it.") from err
    return "euler", {}, "null"


def _seed_image(seed: int, height: int, width: int) -> np.ndarray:
    """A deterministic sky/ground picture, used when the sandbox is not installed."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    horizon = rng.uniform(0.35, 0.6)
    sky = np.array([rng.uniform(90, 160), rng.uniform(140, 200), 230.0])
    ground = rng.uniform(40, 140, size=3)
    img = np.where(y < horizon, sky * (0.7 + 0.3 * y / horizon), ground * (0.6 + 0.4 * y))
    img = np.broadcast_to(img, (height, width, 3)) + rng.normal(0, 6, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def sandbox_first_frame(seed: int, height: int, width: int) -> tuple[np.ndarray, str]:
    """First frame of sandbox scene ``seed``, or a seeded picture if the sandbox cannot render it.

    The sandbox is imported directly rather than looked up in :mod:`world.registry`: the registry
    builds this engine, so asking it back would make the two modules import each other.
    """
    engine = None
    try:
        engine = SandboxWorld(height=height, width=width)
        chunk = engine.reset(seed=seed)
        return np.asarray(chunk.frames[-1], dtype=np.uint8), "sandbox"
    except (TypeError, ValueError, RuntimeError) as err:
        logger.warning("sandbox could not render seed %s (%s); using a seeded picture", seed, err)
    finally:
        if engine is not None:
            engine.close()
    return _seed_image(seed, height, width), "seeded-picture"


class MVDTWorld(WorldEngine):
    """A generated, explorable world driven by camera actions.

    Parameters
    ----------
    checkpoint : path, optional
        Checkpoint folder (``model.safetensors`` + ``config.json``); default
        ``world/checkpoints/mvdt-warp/``. Ignored when ``model`` is given.
    model : MVDTModel, optional
        An in-memory model (tests, training previews).
    codec : object, optional
        Frames <-> latents (see :mod:`world.mvdt.pipeline`); default from ``config.codec``.
    sampler : str
        ``"euler"``, ``"tts-sde"`` or ``"aam"``; default from the checkpoint's ``sampler.json``
        if present, else Euler.
    sampler_params : dict, optional
        Sampler parameters (``num_steps``, ``guidance_scale``, ``eta`` ...).
    negative : {"null", "still"}, optional
        What guidance pushes away from; default from ``sampler.json``, else ``"null"``.
    cache_blocks, cache_reuse
        Residual caching: block indices and reuse count (0 = off).
    seed : int
        Default scene seed and noise seed.
    height, width : int, optional
        Display size of the returned frames (default: the model's); generation always runs at
        the model's resolution and frames are resized bicubically.
    frames_per_step : int, optional
        Only checked: it must equal the model's frames per chunk.
    frame_rate : float
        Frames per second of the returned timestamps.
    motion : MotionStep
        Metres/degrees per frame of the poses reported for each action.
    device : str
        Torch device.
    context_noise : float
        Inference context noise of :class:`~world.mvdt.pipeline.MVDTPipeline` (0 = off).
    feedback : {"shown", "latents"}
        What the history keeps of a generated chunk: ``"shown"`` (default) re-encodes the
        frames as displayed (clipped to the codec's range, rounded to 8 bits), so values the
        codec cannot show never feed the next chunk; ``"latents"`` keeps the sampler's raw
        output (the behaviour before; its out-of-range values compound in long drives).
    use_depth : bool
        Warp the geometric memory with the checkpoint's learned depth (its ``depth/`` folder,
        :mod:`world.mvdt.depth`) when it has one; False keeps the fixed depth prior.
    """

    name = "mvdt"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: MVDTModel | None = None,
        codec=None,
        sampler: str | None = None,
        sampler_params: dict[str, Any] | None = None,
        negative: str | None = None,
        cache_blocks: tuple[int, ...] | list[int] = (),
        cache_reuse: int = 0,
        seed: int = 0,
        height: int | None = None,
        width: int | None = None,
        frames_per_step: int | None = None,
        frame_rate: float = 16.0,
        motion: MotionStep | None = None,
        device: str = "cpu",
        context_noise: float = 0.0,
        feedback: str = "shown",
        use_depth: bool = True,
    ) -> None:
        ckpt_dir = None
        if model is None:
            ckpt_dir = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
            if not (ckpt_dir / "model.safetensors").is_file():
                raise WorldError(
                    f"No trained MVDT checkpoint at {ckpt_dir}; train one with `yume world train` "
                    "or pass a folder that holds model.safetensors and config.json."
                )
            model = load_checkpoint(ckpt_dir, device=device)
        self.model = model.eval()
        self.checkpoint_dir = ckpt_dir
        cfg = model.config
        self.config = cfg
        self.model_height, self.model_width = cfg.frame_height, cfg.frame_width
        # A display size other than the model's is served by resizing the generated frames.
        self.height, self.width = check_resolution(
            height or cfg.frame_height, width or cfg.frame_width)
        self.frames_per_step = cfg.frames_per_chunk
        if frames_per_step is not None and int(frames_per_step) != self.frames_per_step:
            raise WorldError(f"This MVDT model generates {self.frames_per_step} frames per step, "
                             f"not {frames_per_step}; leave frames_per_step unset.")
        if not frame_rate > 0:
            raise WorldError(f"frame_rate must be positive, got {frame_rate}.")
        self.frame_rate = float(frame_rate)
        self.motion = motion or MotionStep()
        self.codec = codec if codec is not None else codec_from_config(cfg.codec, ckpt_dir)
        name, params, spec_negative = read_sampler_spec(ckpt_dir)
        name = sampler or name
        params = {**params, **(sampler_params or {})}
        cache = ResidualCache(cache_blocks, cache_reuse) if cache_reuse and cache_blocks else None
        self.pipeline = MVDTPipeline(model, self.codec, name, cache=cache,
                                     negative=negative or spec_negative,
                                     context_noise=context_noise, **params)
        if feedback not in ("shown", "latents"):
            raise WorldError(f"feedback must be 'shown' or 'latents', not {feedback!r}.")
        self.feedback = feedback
        self.warp_memory = None
        if cfg.warp_sources:
            from world.mvdt.depth import memory_depth
            from world.mvdt.warp import WarpMemory

            # The checkpoint's learned depth, if it ships one (mvdt-warp does): walls come
            # towards the camera instead of staying at the prior's 16 m.
            depth = memory_depth(ckpt_dir) if use_depth else None
            self.warp_memory = WarpMemory(cfg, self.codec, self.motion, depth_model=depth)
        self.seed = int(seed)
        self.history = HistoryBuffer(cfg)
        self._state = CameraState()
        self._frame_index = 0
        self._generator = torch.Generator().manual_seed(self.seed)
        self._started = False

    def _display(self, frames: np.ndarray) -> np.ndarray:
        """Frames at the display size (a copy; resized when it differs from the model's)."""
        if frames.shape[1:3] == (self.height, self.width):
            return frames.copy()
        return np.stack([
            np.asarray(Image.fromarray(f).resize((self.width, self.height),
                                                 Image.Resampling.BICUBIC))
            for f in frames
        ])

    # ------------------------------------------------------------------ WorldEngine
    @property
    def pose(self) -> np.ndarray:
        return self._state.pose()

    @property
    def history_tokens(self) -> int:
        """Tokens of the history context the next step will use (bounded)."""
        return history_token_count(len(self.history), self.config) if self._started else 0

    def reset(self, seed: int | None = None, image: Any = None, clip: Any = None) -> Chunk:
        """Start from ``image`` (any size/mode), a ``clip`` or sandbox scene ``seed``.

        A clip (frames oldest first, each fitted like an image) is encoded whole and becomes
        the history: its first frame is the history's fine-kernel first frame, later ones are
        compressed by :func:`~world.mvdt.memory.history_plan` as a long run's would be, and
        frames beyond the plan's reach are dropped. The clip's last frame is the first frame
        shown and the camera starts at the origin there. With a codec of temporal stride
        ``s > 1`` the oldest frames are trimmed to ``1 + s * k`` so the clip encodes whole.
        """
        frames = check_start(image, clip)
        seed = self.seed if seed is None else int(seed)
        mh, mw = self.model_height, self.model_width
        if frames is not None:
            stride = max(int(self.config.frames_per_latent), 1)
            frames = frames[(len(frames) - 1) % stride:]  # 1 + stride * k frames, newest kept
            video = np.stack([prepare_image(f, mh, mw) for f in frames])
            source = "clip"
        elif image is not None:
            video, source = prepare_image(image, mh, mw)[None], "image"
        else:
            frame, source = sandbox_first_frame(seed, mh, mw)
            video = prepare_image(frame, mh, mw)[None]
        latents = self.codec.encode(video)
        self.history.reset(latents.to(self.model.device, torch.float32))
        frame = video[-1]
        if self.warp_memory is not None:
            # Clip frames have no known camera: the warp starts from the shown (last) frame.
            self.warp_memory.reset(frame[None], [CameraState()])
        self._generator = torch.Generator().manual_seed(seed)
        self._state = CameraState()
        self._frame_index = 0
        self._started = True
        info = {"source": source, "seed": seed}
        if frames is not None:
            info.update(clip_frames=len(video), history_frames=len(self.history))
        return Chunk(
            frames=self._display(frame[None]), timestamps=np.zeros(1),
            poses=self._state.pose()[None],
            action=IDLE, info=info,
        )

    def step(self, action: Action | str) -> Chunk:
        """Generate the next chunk under ``action``."""
        if isinstance(action, str):
            try:
                action = parse_action(action)
            except ActionError as err:
                raise WorldError(str(err)) from err
        if not isinstance(action, Action):
            raise WorldError(f"step() needs an Action or a key string such as 'W ->', not "
                             f"{type(action).__name__}.")
        if not self._started:
            self.reset()
        t0 = time.perf_counter()
        hist = self.history.latents()
        warp = (self.warp_memory.condition([action]) if self.warp_memory is not None
                else None)
        latents = self.pipeline.generate_latents(hist, action, generator=self._generator,
                                                 warp=warp)
        frames = np.asarray(self.codec.decode(latents), dtype=np.uint8)
        if self.warp_memory is not None:
            self.warp_memory.advance(frames[None])
        if self.feedback == "shown":
            latents = self.codec.encode(frames).to(latents)
        self.history.append(latents)
        poses, stamps = [], []
        for _ in range(len(frames)):
            self._state = apply_action(self._state, action, self.motion)
            self._frame_index += 1
            poses.append(self._state.pose())
            stamps.append(self._frame_index / self.frame_rate)
        info = {
            "generation_time": time.perf_counter() - t0,
            "history_frames": int(hist.shape[1]),
            "history_tokens": history_token_count(int(hist.shape[1]), self.config),
            "sampler": self.pipeline.sampler.name,
            "model_evals": self.pipeline.sampler.num_evals,
        }
        return Chunk(frames=self._display(frames), timestamps=np.asarray(stamps),
                     poses=np.stack(poses),
                     action=action, info=info)
