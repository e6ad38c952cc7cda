"""Inverse-dynamics model (IDM): which action moved the camera between two frames.

Peers of Yume score action following without people: a classifier trained on ground-truth video
predicts the action from generated frames and is compared with the commanded one. This module's
classifier sees the frame before a chunk and the chunk's last frame, and predicts the translation
key (9 classes) and the rotation key (9 classes) of :mod:`control.actions`. Predictions average
the four symmetric views of a pair (as given, mirrored, time-reversed, both), each mapped back
through its label permutation, which makes the classifier exactly consistent with the symmetries
and is worth about 3 points of translation accuracy.

Labels come from the exact poses (:func:`motion_labels`), not from the commanded action, so a
chunk where the camera was blocked by a wall is labelled with the motion that really happened.
Weights are stored as safetensors with a JSON config (nothing executable).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from control.actions import ROTATIONS, TRANSLATIONS, Action
from control.motion import relative_motion
from world.base import WorldError
from world.device import torch_device

logger = logging.getLogger(__name__)


class IDMError(WorldError):
    """An inverse-dynamics model file or input that cannot be used."""


def motion_labels(
    pose_a: np.ndarray,
    pose_b: np.ndarray,
    metres: float,
    radians: float,
    fraction: float = 0.35,
) -> tuple[int, int]:
    """(translation class, rotation class) of the motion from ``pose_a`` to ``pose_b``.

    A component counts when it exceeds ``fraction`` of the distance (``metres``) or angle
    (``radians``) that one full chunk of the action would cover, so sliding along a wall or a
    pitch clamp does not invent keys.
    """
    t, yaw, pitch = relative_motion(pose_a, pose_b)
    thr_t, thr_r = fraction * metres, fraction * radians
    fb = "W" if t[2] > thr_t else "S" if t[2] < -thr_t else ""
    lr = "D" if t[0] > thr_t else "A" if t[0] < -thr_t else ""
    ud = "↑" if pitch > thr_r else "↓" if pitch < -thr_r else ""
    turn = "→" if yaw > thr_r else "←" if yaw < -thr_r else ""
    return (TRANSLATIONS.index("+".join(k for k in (fb, lr) if k) or "·"),
            ROTATIONS.index((ud + turn) or "·"))


def pairs_from_clips(
    frames: torch.Tensor,
    poses: torch.Tensor,
    frames_per_step: int,
    metres_per_frame: float = 0.08,
    degrees_per_frame: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame pairs spanning each chunk of clips, with pose-derived labels.

    Parameters
    ----------
    frames : tensor (N, T, H, W, 3) uint8
    poses : tensor (N, T, 4, 4)
    frames_per_step : int

    Returns
    -------
    before, after : tensor (M, H, W, 3) uint8
    labels : tensor (M, 2) int64, (translation class, rotation class)
    """
    n, t = frames.shape[:2]
    chunks = (t - 1) // frames_per_step
    before, after, labels = [], [], []
    metres = metres_per_frame * frames_per_step
    radians = np.deg2rad(degrees_per_frame) * frames_per_step
    p = poses.numpy().astype(np.float64)
    for i in range(n):
        for k in range(chunks):
            a, b = k * frames_per_step, (k + 1) * frames_per_step
            before.append(frames[i, a])
            after.append(frames[i, b])
            labels.append(motion_labels(p[i, a], p[i, b], metres, radians))
    return torch.stack(before), torch.stack(after), torch.tensor(labels, dtype=torch.int64)


@dataclass(frozen=True)
class IDMConfig:
    """Size of the inverse-dynamics CNN."""

    height: int = 64
    width: int = 64
    width_mult: int = 24
    hidden: int = 128
    frames_per_step: int = 4
    metres_per_frame: float = 0.08
    degrees_per_frame: float = 2.0
    dropout: float = 0.3
    stem: int = 16


class InverseDynamics(nn.Module):
    """Small CNN on (before, after, after - before) stacked as 9 channels; two 9-way heads."""

    def __init__(self, config: IDMConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or IDMConfig()
        w = c.width_mult
        chans = [9, w, 2 * w, 4 * w, 4 * w]
        # A stride-1 stem sees the 1-3 pixel parallax that a step forward causes at 64 px.
        layers = [nn.Conv2d(9, c.stem, 3, padding=1), nn.GroupNorm(4, c.stem), nn.SiLU()]
        chans[0] = c.stem
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(4, cout),
                       nn.SiLU()]
        self.features = nn.Sequential(*layers)
        feat = chans[-1] * (c.height // 16) * (c.width // 16)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(c.dropout), nn.Linear(feat, c.hidden),
                                   nn.SiLU(), nn.Dropout(c.dropout))
        self.translation = nn.Linear(c.hidden, len(TRANSLATIONS))
        self.rotation = nn.Linear(c.hidden, len(ROTATIONS))

    @staticmethod
    def _prep(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def forward(self, before: torch.Tensor, after: torch.Tensor):
        """Logits ``(B, 9)`` for translation and rotation from uint8 ``(B, H, W, 3)`` pairs."""
        if before.shape != after.shape or before.shape[1:] != (
            self.config.height, self.config.width, 3
        ):
            raise IDMError(
                f"The IDM takes two (B, {self.config.height}, {self.config.width}, 3) frame "
                f"batches, got {tuple(before.shape)} and {tuple(after.shape)}."
            )
        return self.logits_unit(self._prep(before), self._prep(after))

    def logits_unit(self, before: torch.Tensor, after: torch.Tensor):
        """Logits from float ``(B, 3, H, W)`` frames in [-1, 1]; differentiable in the frames."""
        h = self.trunk(self.features(torch.cat([before, after, after - before], dim=1)))
        return self.translation(h), self.rotation(h)

    @torch.no_grad()
    def symmetric_log_probs(self, before: torch.Tensor, after: torch.Tensor):
        """Log-probabilities averaged over the four symmetric views of each pair.

        The pair as given, mirrored left-right, time-reversed, and both: each view's
        probabilities are mapped back through the label permutation of its symmetry (the
        same ones :func:`symmetry_augment` trains with) and averaged. Returns ``(B, 9)``
        translation and ``(B, 9)`` rotation log-probabilities.
        """
        pt, pr = 0.0, 0.0
        for flip in (False, True):
            for rev in (False, True):
                a, b = (after, before) if rev else (before, after)
                if flip:
                    a, b = a.flip(2), b.flip(2)
                lt, lr = self(a, b)
                perm_t, perm_r = torch.arange(len(TRANSLATIONS)), torch.arange(len(ROTATIONS))
                if flip:
                    perm_t, perm_r = _FLIP_T[perm_t], _FLIP_R[perm_r]
                if rev:
                    perm_t, perm_r = _REV_T[perm_t], _REV_R[perm_r]
                pt = pt + lt.softmax(1)[:, perm_t]
                pr = pr + lr.softmax(1)[:, perm_r]
        return (pt / 4).log(), (pr / 4).log()

    @torch.no_grad()
    def predict(self, before: torch.Tensor, after: torch.Tensor, batch: int = 256,
                symmetric: bool = True) -> torch.Tensor:
        """Predicted (translation class, rotation class) per pair: ``(B, 2)`` int64.

        ``symmetric`` averages over the mirrored and time-reversed views
        (:meth:`symmetric_log_probs`); False reads the pair as given only.
        """
        self.eval()
        out = []
        for i in range(0, len(before), batch):
            a, b = torch.as_tensor(before[i:i + batch]), torch.as_tensor(after[i:i + batch])
            lt, lr = self.symmetric_log_probs(a, b) if symmetric else self(a, b)
            out.append(torch.stack([lt.argmax(1), lr.argmax(1)], dim=1))
        return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.int64)

    def predict_actions(self, before: torch.Tensor, after: torch.Tensor) -> list[Action]:
        """Predicted :class:`~control.actions.Action` per pair."""
        return [Action(TRANSLATIONS[int(t)], ROTATIONS[int(r)])
                for t, r in self.predict(before, after)]

    def save(self, directory: str | Path, extra: dict | None = None) -> None:
        """Write ``idm.safetensors`` and ``idm_config.json`` (plus ``extra`` metadata)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  str(d / "idm.safetensors"))
        meta = {"config": asdict(self.config), **(extra or {})}
        (d / "idm_config.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> InverseDynamics:
        d = Path(directory)
        if not (d / "idm.safetensors").is_file():
            raise IDMError(f"No IDM weights in {d}; train them with `yume world eval --train-idm`.")
        try:
            meta = json.loads((d / "idm_config.json").read_text())
            model = cls(IDMConfig(**meta["config"]))
            model.load_state_dict(load_file(str(d / "idm.safetensors")))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise IDMError(f"Cannot load the IDM from {d}: {err}. Retrain it.") from err
        model.eval()
        return model


def motion_kl(critic: InverseDynamics, before: torch.Tensor, target: torch.Tensor,
              generated: torch.Tensor) -> torch.Tensor:
    """How differently ``critic`` reads the motion of a generated frame and of the true one.

    Per example, the KL divergence from the critic's translation and rotation probabilities on
    ``(before, target)`` to those on ``(before, generated)`` (summed over the two heads). All
    frames are float ``(B, 3, H, W)`` in [-1, 1]; the gradient reaches ``generated`` only. As a
    training loss it asks a generator for frames whose motion reads like the true motion
    (including "none" where the true camera was blocked), which a pixel loss on a blurred
    prediction barely rewards. Use a critic trained apart from the evaluating IDM (other seed,
    other clips), so that the evaluation does not score the critic's own preferences.

    Returns
    -------
    Tensor (B,)
    """
    with torch.no_grad():
        ref = [x.log_softmax(1) for x in critic.logits_unit(before, target)]
    gen = [x.log_softmax(1) for x in critic.logits_unit(before, generated)]
    return sum(F.kl_div(g, r, log_target=True, reduction="none").sum(1)
               for g, r in zip(gen, ref, strict=True))


def _index_map(keys: tuple[str, ...], swaps: dict[str, str]) -> torch.Tensor:
    both = {**swaps, **{v: k for k, v in swaps.items()}}
    return torch.tensor([keys.index(both.get(k, k)) for k in keys])


# Label permutations of the symmetries of the data: a mirrored pair (left <-> right) and a
# time-reversed pair (after, before) are valid examples of the mirrored / opposite motion.
_FLIP_T = torch.tensor([TRANSLATIONS.index(Action(t).mirrored().translation)
                        for t in TRANSLATIONS])
_FLIP_R = torch.tensor([ROTATIONS.index(Action("·", r).mirrored().rotation) for r in ROTATIONS])
_REV_T = _index_map(TRANSLATIONS, {"W": "S", "A": "D", "W+A": "S+D", "W+D": "S+A"})
_REV_R = _index_map(ROTATIONS, {"→": "←", "↑": "↓", "↑→": "↓←", "↑←": "↓→"})


def symmetry_augment(before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly mirror (left/right) and time-reverse pairs, permuting their labels to match."""
    before, after, labels = before.clone(), after.clone(), labels.clone()
    flip = torch.rand(len(labels), generator=gen) < 0.5
    before[flip] = before[flip].flip(2)
    after[flip] = after[flip].flip(2)
    labels[flip, 0] = _FLIP_T[labels[flip, 0]]
    labels[flip, 1] = _FLIP_R[labels[flip, 1]]
    rev = torch.rand(len(labels), generator=gen) < 0.5
    before[rev], after[rev] = after[rev].clone(), before[rev].clone()
    labels[rev, 0] = _REV_T[labels[rev, 0]]
    labels[rev, 1] = _REV_R[labels[rev, 1]]
    return before, after, labels


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur some samples (generated frames are softer than rendered ones) and add noise."""
    x = x.float()
    blur = torch.rand(len(x), generator=gen) < 0.3
    if blur.any():
        xb = x[blur].permute(0, 3, 1, 2)
        xb = F.interpolate(F.avg_pool2d(xb, 2), scale_factor=2, mode="bilinear")
        x[blur] = xb.permute(0, 2, 3, 1)
    x = x + torch.randn(x.shape, generator=gen) * 4.0
    return x.round().clamp(0, 255).to(torch.uint8)


def _one_cycle(done: float, lr: float, warm: float = 0.3) -> float:
    """Learning rate at fraction ``done`` of training: cosine up from ``lr / 25`` over the first
    ``warm`` of it, then cosine down to ``lr / 25e4`` (the shape of torch's ``OneCycleLR``)."""
    lo, end = lr / 25.0, lr / 25e4
    if done < warm:
        return lo + (lr - lo) * (1 - math.cos(math.pi * done / warm)) / 2
    return end + (lr - end) * (1 + math.cos(math.pi * (done - warm) / (1 - warm))) / 2


def accuracy(model: InverseDynamics, before, after, labels) -> dict:
    """Translation, rotation and joint (both right) accuracy of ``model`` on labelled pairs."""
    pred = model.predict(before, after)
    ok = pred == labels
    return {"translation": float(ok[:, 0].float().mean()),
            "rotation": float(ok[:, 1].float().mean()),
            "action": float(ok.all(1).float().mean()), "n": int(len(labels))}


def fit_idm(
    before: torch.Tensor,
    after: torch.Tensor,
    labels: torch.Tensor,
    config: IDMConfig | None = None,
    steps: int = 2000,
    batch: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seconds: float | None = None,
    seed: int = 0,
    augment: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[InverseDynamics, list[dict]]:
    """Train an :class:`InverseDynamics` on labelled frame pairs.

    Stops after ``steps`` steps or ``seconds`` of wall-clock time, whichever comes first.
    Batches are drawn and augmented on the CPU (so a seed gives the same batches anywhere) and
    stepped on ``device``. Returns the model (on the CPU, in eval mode) and its log
    (step, seconds, loss).
    """
    device = torch_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    h, w = before.shape[1:3]
    c = config or IDMConfig(height=h, width=w)
    model = InverseDynamics(c).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    log, start = [], time.perf_counter()
    model.train()
    for step in tqdm(range(steps), desc="idm", disable=not progress):
        # One cycle over the steps or the seconds, whichever runs out first, so a time-capped
        # run still anneals.
        done = step / max(steps - 1, 1)
        if seconds is not None:
            done = max(done, (time.perf_counter() - start) / max(seconds, 1e-9))
        for g in opt.param_groups:
            g["lr"] = _one_cycle(min(done, 1.0), lr)
        idx = torch.randint(len(before), (batch,), generator=gen)
        a, b, y = before[idx], after[idx], labels[idx]
        if augment:
            a, b, y = symmetry_augment(a, b, y, gen)
            a, b = _augment(a, gen), _augment(b, gen)
        a, b, y = a.to(device), b.to(device), y.to(device)
        lt, lr_ = model(a, b)
        loss = F.cross_entropy(lt, y[:, 0]) + F.cross_entropy(lr_, y[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        # Losses stay tensors until the end: reading one each step would stall a GPU.
        log.append({"step": step + 1, "seconds": elapsed, "loss": loss.detach()})
        if seconds is not None and elapsed > seconds:
            break
    for row in log:
        row["loss"] = float(row["loss"])
    model.cpu().eval()
    return model, log


def _clip_tensors(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    from world.training.data import ClipDataset

    ds = ClipDataset(folder)
    poses = torch.stack([ds[k]["poses"] for k in range(len(ds))])
    return ds.all_frames(), poses, ds.frames_per_step


def train_idm_from_folders(
    train_dir: str | Path | list,
    heldout_dir: str | Path,
    out: str | Path | None = None,
    steps: int = 1500,
    threads: int = 1,
    seconds: float | None = None,
    progress: bool = True,
    batch: int = 64,
    device: str | torch.device = "cpu",
    **kwargs,
) -> dict:
    """Train the IDM on a clip dataset, score it on held-out scenes and save it to ``out``.

    ``batch`` and ``device`` are :func:`fit_idm`'s; the device is checked before any clips are
    read. Returns a report: train/held-out accuracy (translation, rotation, both), training
    time, batch and device, and the label distribution of the held-out pairs.
    """
    device = torch_device(device)
    torch.set_num_threads(max(1, threads))
    dirs = train_dir if isinstance(train_dir, list | tuple) else str(train_dir).split(",")
    h_frames, h_poses, fps = _clip_tensors(heldout_dir)
    parts = []
    for d in dirs:
        frames, poses, d_fps = _clip_tensors(d)
        if d_fps != fps or h_frames.shape[2:] != frames.shape[2:]:
            raise IDMError(f"The clips in {d} differ from the held-out ones in frame size or "
                           "frames per step; regenerate them with the same settings.")
        parts.append(pairs_from_clips(frames, poses, fps))
    before, after, labels = (torch.cat([p[i] for p in parts]) for i in range(3))
    hb, ha, hl = pairs_from_clips(h_frames, h_poses, fps)
    config = IDMConfig(height=frames.shape[2], width=frames.shape[3], frames_per_step=fps,
                       **kwargs.pop("config", {}))
    t0 = time.perf_counter()
    model, log = fit_idm(before, after, labels, config, steps=steps, seconds=seconds,
                         progress=progress, batch=batch, device=device, **kwargs)
    report = {
        "train_seconds": time.perf_counter() - t0, "steps": len(log),
        "batch": batch, "device": str(device),
        "train_pairs": int(len(labels)), "heldout_pairs": int(len(hl)),
        "train_accuracy": accuracy(model, before[:2000], after[:2000], labels[:2000]),
        "heldout_accuracy": accuracy(model, hb, ha, hl),
        "heldout_translation_counts": torch.bincount(hl[:, 0], minlength=9).tolist(),
        "heldout_rotation_counts": torch.bincount(hl[:, 1], minlength=9).tolist(),
    }
    if out is not None:
        model.save(out, {"report": report})
    return report
