"""World-exploration clips from a world engine: random plausible walks, written as shards.

A *clip* is what a person sees while walking through one scene: the first frame of the scene,
then ``chunks_per_clip`` chunks of ``frames_per_step`` frames, each chunk produced by one action
held constant (as in Yume's training data, where clips are cut where the action stays constant).
Every frame comes with its exact camera-to-world pose and timestamp.

On-disk format (``format: "yume-world-clips"``, ``version: 1``)
----------------------------------------------------------------
A dataset is a folder holding ``index.json`` and shards ``shard-00000.safetensors``, ... Each shard
stacks ``n`` clips of the same length ``T = 1 + chunks_per_clip * frames_per_step``:

============  ===========================  ========  ==========================================
key           shape                        dtype     meaning
============  ===========================  ========  ==========================================
frames        (n, T, H, W, 3)              uint8     RGB frames
poses         (n, T, 4, 4)                 float64   camera-to-world poses (OpenCV: x right,
                                                     y down, z forward)
timestamps    (n, T)                       float64   seconds since the scene started
actions       (n, chunks_per_clip)         int64     :attr:`control.actions.Action.index` (0-80)
                                                     of the action that produced each chunk
seeds         (n,)                         int64     scene seed of each clip
============  ===========================  ========  ==========================================

``index.json`` holds ``format``, ``version``, ``split`` (``"train"`` or ``"heldout"``),
``engine`` (name and keyword arguments of the world engine), ``height``, ``width``,
``frames_per_step``, ``chunks_per_clip``, ``frame_rate``, ``policy`` (the walk policy's
parameters), ``seed`` (the random generator's seed), ``n_clips`` and ``shards``: a list of
``{"file", "n_clips", "seeds"}``. Clip ``k`` of the dataset is clip ``k - offset`` of the shard
that contains it, in the order of ``shards``. Nothing in a dataset is executable: tensors are
safetensors, metadata is JSON.

Scene seeds: the training split draws scene seeds from ``[0, HELDOUT_SEED_START)``, the held-out
split from ``[HELDOUT_SEED_START, 2 * HELDOUT_SEED_START)``, so the two never share a scene.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from control.actions import ROTATIONS, TRANSLATIONS, Action
from world.base import WorldEngine, WorldError

logger = logging.getLogger(__name__)

FORMAT = "yume-world-clips"
VERSION = 1
HELDOUT_SEED_START = 1_000_000
SPLITS = ("train", "heldout")


class DatasetError(WorldError):
    """A clip dataset that is missing, malformed or of another format."""


# --------------------------------------------------------------------------- scene seeds
def scene_seeds(split: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct scene seeds of ``split``; train and held-out ranges never overlap.

    Parameters
    ----------
    split : {"train", "heldout"}
        Which range to draw from.
    n : int
        How many seeds.
    seed : int
        Seed of the generator that draws them (same ``seed`` gives the same scenes).
    """
    if split not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; use 'train' or 'heldout'.")
    if not 0 <= n <= HELDOUT_SEED_START:
        raise DatasetError(f"Cannot draw {n} scene seeds; ask for 0 to {HELDOUT_SEED_START}.")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    base = 0 if split == "train" else HELDOUT_SEED_START
    return base + rng.choice(HELDOUT_SEED_START, size=n, replace=False).astype(np.int64)


# --------------------------------------------------------------------------- walk policy
@dataclass(frozen=True)
class WalkPolicy:
    """How a simulated explorer picks the action held for each chunk.

    Mostly forward walking and turning, some strafing and tilting, few idle chunks; an action is
    often kept for several chunks (people walk in runs), and after bumping into something the
    explorer turns away instead of pushing against the wall.

    Parameters
    ----------
    translation_weights, rotation_weights : dict
        Relative frequency of each translation / rotation key (missing keys get 0).
    keep_probability : float
        Chance of repeating the previous action for the next chunk.
    idle_probability : float
        Chance of a fully idle chunk (``"· ·"``), on top of the weights above.
    level_pitch_probability : float
        Chance that a chunk with tilted camera (|pitch| > 20 degrees) tilts back toward level.
    blocked_fraction : float
        A chunk whose camera moved less than this fraction of the commanded distance counts as
        blocked (walked into a wall).
    push_probability : float
        Chance that a blocked explorer keeps pressing against the obstacle with the same action
        (people steering a BCI do); 0 always turns away.
    """

    translation_weights: dict = field(default_factory=lambda: {
        "·": 0.22, "W": 0.46, "A": 0.05, "S": 0.05, "D": 0.05,
        "W+A": 0.06, "W+D": 0.06, "S+A": 0.025, "S+D": 0.025,
    })
    rotation_weights: dict = field(default_factory=lambda: {
        "·": 0.40, "→": 0.17, "←": 0.17, "↑": 0.06, "↓": 0.06,
        "↑→": 0.035, "↑←": 0.035, "↓→": 0.035, "↓←": 0.035,
    })
    keep_probability: float = 0.35
    idle_probability: float = 0.03
    level_pitch_probability: float = 0.6
    blocked_fraction: float = 0.5
    push_probability: float = 0.0

    def __post_init__(self) -> None:
        for name, keys in (("translation_weights", TRANSLATIONS), ("rotation_weights", ROTATIONS)):
            w = getattr(self, name)
            bad = set(w) - set(keys)
            if bad or any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
                raise DatasetError(
                    f"WalkPolicy.{name} must map keys of {keys} to non-negative weights with a "
                    "positive sum."
                )
        for name in ("keep_probability", "idle_probability", "level_pitch_probability",
                     "blocked_fraction", "push_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DatasetError(f"WalkPolicy.{name} must lie between 0 and 1.")

    def _draw(self, rng: np.random.Generator, keys: tuple[str, ...], weights: dict) -> str:
        p = np.array([weights.get(k, 0.0) for k in keys], dtype=float)
        return keys[int(rng.choice(len(keys), p=p / p.sum()))]

    def next_action(
        self,
        rng: np.random.Generator,
        previous: Action | None = None,
        blocked: bool = False,
        pitch: float = 0.0,
    ) -> Action:
        """The action for the next chunk.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (the only one: same generator state, same action).
        previous : Action, optional
            The action of the previous chunk.
        blocked : bool
            Whether the previous chunk ran into an obstacle.
        pitch : float
            Current camera pitch in radians (positive = up).
        """
        pushing = (blocked and previous is not None and self.push_probability > 0
                   and rng.random() < self.push_probability)
        if pushing:
            return previous
        if blocked:
            # Turn away (sometimes stepping back) rather than pushing against the wall.
            translation = "S" if rng.random() < 0.25 else "·"
            return Action(translation, "→" if rng.random() < 0.5 else "←")
        if previous is not None and rng.random() < self.keep_probability:
            action = previous
        elif rng.random() < self.idle_probability:
            action = Action()
        else:
            action = Action(
                self._draw(rng, TRANSLATIONS, self.translation_weights),
                self._draw(rng, ROTATIONS, self.rotation_weights),
            )
        if abs(pitch) > np.deg2rad(20) and rng.random() < self.level_pitch_probability:
            # Look back toward the horizon: replace the vertical part of the rotation.
            turn = action.rotation.replace("↑", "").replace("↓", "").replace("·", "")
            action = Action(action.translation, ("↓" if pitch > 0 else "↑") + turn)
        return action


# --------------------------------------------------------------------------- clip generation
@dataclass
class Clip:
    """One walk through one scene (see the module docstring for shapes)."""

    frames: np.ndarray
    poses: np.ndarray
    timestamps: np.ndarray
    actions: np.ndarray
    seed: int

    @property
    def action_list(self) -> list[Action]:
        return [Action.from_index(int(i)) for i in self.actions]


def _pitch(pose: np.ndarray) -> float:
    return float(np.arcsin(np.clip(-pose[1, 2], -1.0, 1.0)))


def generate_clip(
    world: WorldEngine,
    seed: int,
    chunks_per_clip: int,
    policy: WalkPolicy | None = None,
    rng: np.random.Generator | None = None,
    metres_per_frame: float | None = None,
) -> Clip:
    """Walk ``chunks_per_clip`` chunks through scene ``seed`` of ``world``.

    Parameters
    ----------
    world : WorldEngine
        A ground-truth engine (the sandbox); it is reset to ``seed``.
    seed : int
        Scene seed.
    chunks_per_clip : int
        Number of actions (chunks) in the clip.
    policy : WalkPolicy, optional
        How actions are chosen (default :class:`WalkPolicy`).
    rng : numpy.random.Generator, optional
        Generator for the actions (default: seeded with ``seed``).
    metres_per_frame : float, optional
        Commanded distance per frame, used to detect blocked chunks when the engine does not
        report collisions in ``Chunk.info``; read from ``world.motion`` when it has one.
    """
    policy = policy or WalkPolicy()
    rng = rng if rng is not None else np.random.default_rng(seed)
    if metres_per_frame is None:
        motion = getattr(world, "motion", None) or getattr(world, "motion_step", None)
        metres_per_frame = float(getattr(motion, "metres_per_frame", 0.08))
    first = world.reset(seed=int(seed))
    frames, poses, stamps, actions = [first.frames], [first.poses], [first.timestamps], []
    action, blocked = None, False
    for _ in range(chunks_per_clip):
        action = policy.next_action(rng, action, blocked, _pitch(poses[-1][-1]))
        chunk = world.step(action)
        start = poses[-1][-1]
        frames.append(chunk.frames)
        poses.append(chunk.poses)
        stamps.append(chunk.timestamps)
        actions.append(action.index)
        if action.translation == "·":
            blocked = False
        elif "collided" in chunk.info or "collision" in chunk.info:
            blocked = bool(chunk.info.get("collided", chunk.info.get("collision")))
        else:
            moved = np.linalg.norm(chunk.poses[-1][[0, 2], 3] - start[[0, 2], 3])
            blocked = moved < policy.blocked_fraction * metres_per_frame * len(chunk)
    return Clip(
        frames=np.concatenate(frames).astype(np.uint8),
        poses=np.concatenate(poses).astype(np.float64),
        timestamps=np.concatenate(stamps).astype(np.float64),
        actions=np.asarray(actions, dtype=np.int64),
        seed=int(seed),
    )


def make_world(
    height: int, width: int, frames_per_step: int, engine: str = "sandbox", **kwargs
) -> WorldEngine:
    """A ground-truth world engine for data generation (the procedural sandbox by default)."""
    if engine != "sandbox":
        raise DatasetError(f"Unknown data engine {engine!r}; only 'sandbox' generates clips.")
    from world.sandbox import SandboxWorld

    return SandboxWorld(seed=0, height=height, width=width, frames_per_step=frames_per_step,
                        **kwargs)


def write_dataset(
    out: str | Path,
    n_clips: int,
    resolution: int | tuple[int, int] = 64,
    chunks_per_clip: int = 16,
    frames_per_step: int = 4,
    split: str = "train",
    seed: int = 0,
    clips_per_shard: int = 64,
    policy: WalkPolicy | None = None,
    engine_kwargs: dict | None = None,
    world_factory: Callable[[], WorldEngine] | None = None,
    progress: bool = True,
) -> Path:
    """Generate ``n_clips`` clips of ``split`` and write them as shards plus ``index.json``.

    Parameters
    ----------
    out : path
        Output folder (created; an existing dataset there is replaced).
    n_clips : int
        Number of clips (one scene each).
    resolution : int or (int, int)
        Frame size; an int means square frames.
    chunks_per_clip, frames_per_step : int
        Clip length in chunks and chunk length in frames.
    split : {"train", "heldout"}
        Which scene-seed range to use.
    seed : int
        Seed for scene seeds and actions (same arguments give byte-identical shards).
    clips_per_shard : int
        Clips stored per shard file.
    policy : WalkPolicy, optional
        How actions are picked.
    engine_kwargs : dict, optional
        Extra keyword arguments of the sandbox (recorded in the index).
    world_factory : callable, optional
        Builds the engine instead of :func:`make_world` (it must honour the resolution).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Path
        The ``index.json`` written.
    """
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if n_clips < 1 or chunks_per_clip < 1 or frames_per_step < 1 or clips_per_shard < 1:
        raise DatasetError(
            "n_clips, chunks_per_clip, frames_per_step and clips_per_shard must all be >= 1."
        )
    policy = policy or WalkPolicy()
    engine_kwargs = dict(engine_kwargs or {})
    world = (world_factory or (lambda: make_world(h, w, frames_per_step, **engine_kwargs)))()
    if (world.height, world.width) != (h, w):
        raise DatasetError(
            f"The world renders {world.height}x{world.width}, not the requested {h}x{w}."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.safetensors"):
        old.unlink()
    seeds = scene_seeds(split, n_clips, seed)
    shards, buffer = [], []

    def flush() -> None:
        name = f"shard-{len(shards):05d}.safetensors"
        tensors = {
            "frames": torch.from_numpy(np.stack([c.frames for c in buffer])),
            "poses": torch.from_numpy(np.stack([c.poses for c in buffer])),
            "timestamps": torch.from_numpy(np.stack([c.timestamps for c in buffer])),
            "actions": torch.from_numpy(np.stack([c.actions for c in buffer])),
            "seeds": torch.tensor([c.seed for c in buffer], dtype=torch.int64),
        }
        save_file(tensors, str(out / name), metadata={"format": FORMAT, "version": str(VERSION)})
        shards.append({"file": name, "n_clips": len(buffer), "seeds": [c.seed for c in buffer]})
        buffer.clear()

    for k, scene in enumerate(tqdm(seeds, desc=f"clips ({split})", disable=not progress)):
        rng = np.random.default_rng([seed, int(scene), 7])
        buffer.append(generate_clip(world, int(scene), chunks_per_clip, policy, rng))
        if len(buffer) == clips_per_shard or k == n_clips - 1:
            flush()
    world.close()
    index = {
        "format": FORMAT, "version": VERSION, "split": split,
        "engine": {"name": getattr(world, "name", type(world).__name__),
                   "kwargs": engine_kwargs},
        "height": h, "width": w, "frames_per_step": frames_per_step,
        "chunks_per_clip": chunks_per_clip, "frame_rate": float(world.frame_rate),
        "policy": asdict(policy), "seed": seed, "n_clips": n_clips, "shards": shards,
    }
    path = out / "index.json"
    path.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    logger.info("wrote %d %s clips to %s", n_clips, split, out)
    return path


# --------------------------------------------------------------------------- reading
def read_index(root: str | Path) -> dict:
    """Load and check ``index.json`` of a dataset folder (or the file itself)."""
    path = Path(root)
    path = path / "index.json" if path.is_dir() else path
    if not path.is_file():
        raise DatasetError(
            f"No clip dataset at {path}; create one with `yume world data --out FOLDER`."
        )
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); regenerate the dataset.") from err
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DatasetError(
            f"{path} is not a {FORMAT} v{VERSION} index; regenerate it with `yume world data`."
        )
    return index


class ClipDataset(torch.utils.data.Dataset):
    """Clips of a dataset folder written by :func:`write_dataset`.

    Items are dicts of tensors: ``frames`` (T, H, W, 3) uint8, ``poses`` (T, 4, 4) float64,
    ``timestamps`` (T,) float64, ``actions`` (chunks_per_clip,) int64 and ``seed`` (int).

    Parameters
    ----------
    root : path
        Dataset folder (with ``index.json``).
    in_memory : bool
        Load all shards at once (fast random access; a 64x64 clip of 65 frames is 0.8 MB).
    """

    def __init__(self, root: str | Path, in_memory: bool = True) -> None:
        self.root = Path(root)
        self.index = read_index(self.root)
        self.frames_per_step = int(self.index["frames_per_step"])
        self.chunks_per_clip = int(self.index["chunks_per_clip"])
        self.height, self.width = int(self.index["height"]), int(self.index["width"])
        self._where: list[tuple[int, int]] = []
        for s, shard in enumerate(self.index["shards"]):
            if not (self.root / shard["file"]).is_file():
                raise DatasetError(
                    f"Shard {shard['file']} listed in {self.root / 'index.json'} is missing; "
                    "regenerate the dataset."
                )
            self._where += [(s, i) for i in range(int(shard["n_clips"]))]
        self._cache: dict[int, dict[str, torch.Tensor]] = {}
        if in_memory:
            for s in range(len(self.index["shards"])):
                self._cache[s] = self._load_shard(s)

    def _load_shard(self, s: int) -> dict[str, torch.Tensor]:
        path = self.root / self.index["shards"][s]["file"]
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, k: int) -> dict:
        s, i = self._where[k]
        if s in self._cache:
            t = self._cache[s]
            item = {key: t[key][i] for key in ("frames", "poses", "timestamps", "actions")}
            item["seed"] = int(t["seeds"][i])
            return item
        path = self.root / self.index["shards"][s]["file"]
        with safe_open(str(path), framework="pt") as f:
            item = {key: f.get_slice(key)[i] for key in ("frames", "poses", "timestamps",
                                                         "actions")}
            item["seed"] = int(f.get_slice("seeds")[i])
        return item

    @property
    def seeds(self) -> list[int]:
        """Scene seed of every clip, in dataset order."""
        return [int(x) for sh in self.index["shards"] for x in sh["seeds"]]

    def all_frames(self) -> torch.Tensor:
        """Every clip's frames stacked: (n_clips, T, H, W, 3) uint8."""
        return torch.stack([self[k]["frames"] for k in range(len(self))])

    def all_actions(self) -> torch.Tensor:
        """Every clip's action indices stacked: (n_clips, chunks_per_clip) int64."""
        return torch.stack([self[k]["actions"] for k in range(len(self))])
