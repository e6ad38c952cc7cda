"""Few-step student: trajectory distillation of the many-step, guided teacher.

Yume distils its 50-step sampler adversarially (50 -> 14 steps); Yume 1.5 reaches 4 steps with
Self-Forcing. On a CPU budget this module does the cheapest honest variant of the idea: the
student (initialised from the teacher) learns to take, in ONE Euler step and WITHOUT guidance,
the step between two of its own sampler sigmas that the teacher takes in ``teacher_steps /
student_steps`` guided Euler steps. The target of step ``i`` is the secant velocity

    v* = (x_teacher(sigma_{i+1}) - x_teacher(sigma_i)) / (sigma_{i+1} - sigma_i),

recorded on teacher trajectories that start from the same noise and history; the loss is
``|| v_student(x_teacher(sigma_i), sigma_i) - v* ||^2``. Guidance is baked in (one model call
per step instead of two) and the step count drops from ``teacher_steps`` to ``student_steps``.
An adversarial term (Yume's 0.01 * hinge loss on a frozen feature network) is not used here.

Trajectories are cached and reused across epochs because the teacher is the expensive part.
Outputs a normal MVDT checkpoint whose ``student.json`` records the sampler to use with it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from world.base import WorldError

logger = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """A distillation run.

    Parameters
    ----------
    teacher : str
        Teacher checkpoint folder.
    data : str
        Training clips (world/data.py format).
    out : str
        Output folder of the student checkpoint.
    student_steps, teacher_steps : int
        Euler steps of student and teacher (``teacher_steps`` must be a multiple).
    teacher_guidance : float
        Teacher's classifier-free guidance scale (baked into the student).
    trajectories : int
        Teacher trajectories to record (each a random history/action from the data).
    batch_size, lr, max_steps, max_minutes, threads, seed : training settings.
    """

    teacher: str = "world/checkpoints/mvdt-sandbox"
    data: str = "runs/world/data/sandbox-64-train"
    out: str = "runs/world/student"
    student_steps: int = 4
    teacher_steps: int = 16
    teacher_guidance: float = 3.0
    trajectories: int = 64
    batch_size: int = 8
    lr: float = 5e-5
    max_steps: int = 500
    max_minutes: float = 20.0
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.student_steps < 1 or self.teacher_steps % self.student_steps:
            raise WorldError("teacher_steps must be a positive multiple of student_steps.")


@torch.no_grad()
def teacher_trajectories(teacher, batch: dict, cfg: DistillConfig, generator: torch.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """States of the guided teacher at the student's sigmas: ``(K+1, B, C, F, h, w)``.

    Also returns the student sigmas ``(K+1,)``.
    """
    from world.mvdt import get_sampler

    sampler = get_sampler("euler", num_steps=cfg.teacher_steps,
                          guidance_scale=cfg.teacher_guidance, shift=teacher.config.flow_shift)
    b = batch["target"].shape[0]
    hist = teacher.embed_history(batch["history"], batch=b)
    cond = teacher.encode_actions(batch["actions"])
    uncond = teacher.encode_actions([None] * b) if cfg.teacher_guidance != 1.0 else None
    noise = torch.randn(batch["target"].shape, generator=generator)
    every = cfg.teacher_steps // cfg.student_steps
    states = [noise]

    def keep(i: int, x: torch.Tensor) -> None:
        if (i + 1) % every == 0:
            states.append(x.clone())

    sampler(lambda x, s, c: teacher(x, s, c, hist), noise, cond, uncond, callback=keep)
    sig = sampler.sigmas()[::every]
    return torch.stack(states), sig


def distill(cfg: DistillConfig, progress: bool = True) -> Path:
    """Train the student and write it (checkpoint + ``student.json`` + ``log.jsonl``)."""
    from world.mvdt import codec_from_config, load_checkpoint, save_checkpoint
    from world.training.data import ClipDataset
    from world.training.train import make_sampler

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    teacher = load_checkpoint(cfg.teacher)
    student = load_checkpoint(cfg.teacher)
    student.train()
    codec = codec_from_config(teacher.config.codec, cfg.teacher)
    ds = ClipDataset(cfg.data)
    if ds.frames_per_step != teacher.config.frames_per_chunk:
        raise WorldError(f"The clips in {cfg.data} have {ds.frames_per_step} frames per step; "
                         f"the teacher makes {teacher.config.frames_per_chunk}.")
    sampler = make_sampler(ds, codec, teacher.config, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    start = time.perf_counter()

    # 1. Teacher trajectories (the expensive part), batch by batch.
    bank = []
    n_batches = max(1, cfg.trajectories // cfg.batch_size)
    for _ in tqdm(range(n_batches), desc="teacher", disable=not progress):
        batch = sampler.sample(cfg.batch_size)
        states, sig = teacher_trajectories(teacher, batch, cfg, gen)
        bank.append((batch["history"], batch["actions"], states))
    teacher_seconds = time.perf_counter() - start

    # 2. Student regression on secant velocities.
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    budget = cfg.max_minutes * 60
    step = 0
    with log_path.open("w") as log:
        for step in tqdm(range(1, cfg.max_steps + 1), desc="student", disable=not progress):
            hist, actions, states = bank[int(torch.randint(len(bank), (1,), generator=gen))]
            i = int(torch.randint(cfg.student_steps, (1,), generator=gen))
            x_i, x_next = states[i], states[i + 1]
            s_i, s_next = float(sig[i]), float(sig[i + 1])
            target = (x_next - x_i) / (s_next - s_i)
            ctx = student.encode_actions(list(actions))
            v = student(x_i, s_i, ctx, student.embed_history(hist, batch=len(actions)))
            loss = torch.nn.functional.mse_loss(v, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            log.write(json.dumps({"step": step, "loss": float(loss.detach()), "sigma_index": i,
                                  "elapsed": time.perf_counter() - start}) + "\n")
            if time.perf_counter() - start > budget:
                break
    student.eval()
    save_checkpoint(student, out, dtype=torch.float16)
    meta = {"sampler": "euler", "num_steps": cfg.student_steps, "guidance_scale": 1.0,
            "distill": asdict(cfg), "steps": step, "teacher_seconds": teacher_seconds,
            "seconds": time.perf_counter() - start}
    (out / "student.json").write_text(json.dumps(meta, indent=1))
    return out


def student_sampler_params(directory: str | Path) -> dict:
    """Sampler settings recorded with a student checkpoint (Euler, its steps, no guidance)."""
    path = Path(directory) / "student.json"
    if not path.is_file():
        raise WorldError(f"{directory} is not a distilled student (no student.json).")
    meta = json.loads(path.read_text())
    return {k: meta[k] for k in ("sampler", "num_steps", "guidance_scale")}

