"""One recipe that rebuilds a checkpoint from nothing (``yume world train --recipe FILE``).

A recipe is a JSON file (``world/recipes/mvdt-warp.json`` rebuilds the shipped model,
``mvdt-sandbox.json`` the model it starts from) whose
``stages`` run in order, each one of:

- ``data``: sandbox clips (:func:`world.training.data.write_dataset`; keys ``out``, ``clips``,
  ``resolution``, ``chunks``, ``frames_per_step``, ``split``, ``seed``, ``shard_size``, ``push``);
- ``idm``: an inverse-dynamics model, the evaluator or a motion critic
  (:func:`world.training.idm.train_idm_from_folders`; keys ``data``, ``heldout``, ``out``,
  ``steps``,
  ``dropout``, ``batch``, ``max_minutes``, ``width``, ``seed``, ``threads``, ``device``);
- ``train``: an MVDT training run (``config`` is a :class:`world.training.train.TrainConfig` dict;
  ``for_minutes`` stops the stage early as ``--for-minutes`` does);
- ``export``: the shippable folder (:func:`world.training.train.export_checkpoint`; keys ``run``,
  ``out``,
  ``idm``, ``sampler``, ``weights``, ``warp_trust``: the inference trust in the geometric memory,
  :class:`world.mvdt.MVDTConfig`), which ships the recipe's one training log;
- ``depth``: the geometric memory's depth model (:func:`world.training.depth.train_depth`; keys
  ``out``, ``scenes``, ``heldout_scenes``, ``minutes``, ``seed``).

Strings may name the recipe's ``vars`` as ``{name}`` (``{runs}`` is where runs and clips go), so
one file serves the full rebuild and a scratch folder alike. ``device`` (recipe-wide, or per
stage) ``"auto"`` means CUDA when present, else the CPU.

Resuming: the recipe's ``work_dir`` holds ``stages.json`` (the stages finished, with a hash of
their settings) and ``training_log.jsonl``, the one log of the whole rebuild. Running the recipe
again skips every finished stage whose settings are unchanged; a training stage that was
interrupted resumes from its run's ``last/`` state (see :func:`world.training.train.train`), and a
data or
IDM stage is redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from world.training.train import TrainConfig, TrainError, export_checkpoint, train

logger = logging.getLogger(__name__)

KINDS = ("data", "idm", "train", "export", "depth")
LOG_NAME = "training_log.jsonl"
STATE_NAME = "stages.json"


def resolve_device(name: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``; others pass."""
    if str(name).strip().lower() == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """Replace ``{name}`` in every string of ``value`` (nested dicts and lists) by its variable."""
    if isinstance(value, str):
        for key, text in variables.items():
            value = value.replace("{" + key + "}", str(text))
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


@dataclass
class Stage:
    """One step of a recipe: a ``kind`` of :data:`KINDS` with its settings."""

    name: str
    kind: str
    args: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    for_minutes: float | None = None
    note: str = ""

    def digest(self) -> str:
        """Hash of the settings, so an edited stage is run again rather than skipped."""
        data = {"kind": self.kind, "args": self.args, "config": self.config,
                "for_minutes": self.for_minutes}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Recipe:
    """Stages that build one checkpoint, read from a recipe file (see the module docstring)."""

    name: str
    work_dir: str
    stages: list[Stage]
    device: str = "auto"
    description: str = ""

    @classmethod
    def load(cls, path: str | Path, variables: dict[str, str] | None = None) -> Recipe:
        """Read a recipe file; ``variables`` override the file's ``vars``.

        Raises
        ------
        TrainError
            If the file is missing, not JSON, or a stage is malformed.
        """
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"No recipe at {path}; see world/recipes/ for the shipped one.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise TrainError(f"{path} is not valid JSON ({err}); fix the file.") from err
        unknown = sorted(set(data) - {"name", "description", "work_dir", "device", "vars",
                                      "stages"})
        if unknown:
            raise TrainError(f"Recipe {path} has unknown keys {unknown}; remove or rename them.")
        env = {**data.get("vars", {}), **(variables or {})}
        data = _substitute({k: v for k, v in data.items() if k != "vars"}, env)
        stages, seen = [], set()
        for k, spec in enumerate(data.get("stages", [])):
            try:
                stage = Stage(**spec)
            except TypeError as err:
                raise TrainError(f"Stage {k + 1} of {path} is malformed ({err}); give it name, "
                                 "kind and args or config.") from err
            if stage.kind not in KINDS:
                raise TrainError(f"Stage {stage.name!r} of {path} has kind {stage.kind!r}; use "
                                 f"one of {', '.join(KINDS)}.")
            if stage.name in seen:
                raise TrainError(f"Two stages of {path} are named {stage.name!r}; name each "
                                 "stage once.")
            seen.add(stage.name)
            stages.append(stage)
        if not stages:
            raise TrainError(f"Recipe {path} has no stages; list them under \"stages\".")
        return cls(name=data.get("name", path.stem), stages=stages,
                   work_dir=data.get("work_dir", f"runs/world/recipe-{path.stem}"),
                   device=data.get("device", "auto"), description=data.get("description", ""))


class _Log:
    """The recipe's one training log: stage events, and every stage's rows tagged with it."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def total_steps(self) -> int:
        """Training steps of the stages logged so far (the next stage's rows continue from it)."""
        if not self.path.is_file():
            return 0
        done = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return max([int(r.get("step", 0)) for r in done if "stage_step" in r] or [0])

    def add_run(self, stage: str, run_dir: str | Path) -> None:
        """Copy a training run's own rows (``run_dir/log.jsonl``) into the one log, tagged with
        ``stage``, their steps continuing the earlier stages'."""
        offset = self.total_steps()
        for line in Path(run_dir, "log.jsonl").read_text().splitlines():
            row = json.loads(line)
            row["stage"] = stage
            if "step" in row and "event" not in row:
                row["stage_step"], row["step"] = row["step"], row["step"] + offset
            self.write(row)


def _run_data(stage: Stage) -> dict:
    from world.training.data import WalkPolicy, write_dataset

    a = stage.args
    out = write_dataset(a["out"], int(a.get("clips", 256)), int(a.get("resolution", 64)),
                        int(a.get("chunks", 16)), int(a.get("frames_per_step", 4)),
                        split=a.get("split", "train"), seed=int(a.get("seed", 0)),
                        clips_per_shard=int(a.get("shard_size", 64)),
                        policy=WalkPolicy(push_probability=float(a.get("push", 0.0))))
    return {"out": str(out)}


def _run_idm(stage: Stage, device: str) -> dict:
    from world.training.idm import train_idm_from_folders

    a = stage.args
    minutes = a.get("max_minutes")
    report = train_idm_from_folders(
        a["data"], a.get("heldout", "runs/world/data/sandbox-64-heldout"), a["out"],
        steps=int(a.get("steps", 1500)), threads=int(a.get("threads", 1)),
        seconds=None if minutes is None else 60.0 * float(minutes),
        config={"dropout": float(a.get("dropout", 0.3)), "width_mult": int(a.get("width", 24))},
        seed=int(a.get("seed", 0)), batch=int(a.get("batch", 64)), device=device)
    return {"out": str(a["out"]), "report": report}


def _run_train(stage: Stage, device: str, log: _Log, progress: bool,
               max_steps: int | None) -> dict:
    cfg = TrainConfig.from_dict({**stage.config, "device": device})
    ckpt = train(cfg, progress=progress, max_steps=max_steps, session_minutes=stage.for_minutes)
    log.add_run(stage.name, cfg.run_dir)
    return {"checkpoint": str(ckpt)}


def _run_export(stage: Stage, log: _Log) -> dict:
    a = stage.args
    out = export_checkpoint(a["run"], a["out"], a.get("idm"), a.get("sampler"),
                            a.get("weights", "ema"), training_log=log.path,
                            warp_trust=a.get("warp_trust"))
    return {"out": str(out)}


def _run_depth(stage: Stage) -> dict:
    """The geometric memory's depth model (:mod:`world.training.depth`), into ``args.out``
    (a checkpoint's ``depth/`` folder, or a folder a train stage's ``warp_depth`` names)."""
    from world.training.depth import train_depth

    a = stage.args
    res = train_depth(a["out"], scenes=int(a.get("scenes", 400)),
                      heldout_scenes=int(a.get("heldout_scenes", 32)),
                      minutes=float(a.get("minutes", 25.0)), seed=int(a.get("seed", 0)))
    return {"out": str(a["out"]), "steps": res["steps"], "heldout": res["heldout"]}


def run_recipe(
    recipe: Recipe | str | Path,
    variables: dict[str, str] | None = None,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_steps: int | None = None,
    report: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run a recipe's stages in order, skipping the finished ones; returns one record a stage.

    Parameters
    ----------
    recipe : Recipe or path
        The recipe, or its file.
    variables : dict, optional
        Overrides of the recipe's ``vars`` (``{"runs": "/scratch/runs"}``); only for a path.
    device : str, optional
        Device of every stage (``"cpu"``, ``"cuda"``, ``"auto"``), overriding the recipe's.
    progress : bool
        Progress bars of the stages, and one line per stage.
    stop_after : int, optional
        Run at most this many stages of the recipe (finished ones count), then stop.
    max_steps : int, optional
        Cap on every training stage's steps (a quick check of the whole chain).
    report : callable, optional
        Receives the one-line progress messages (default: :func:`tqdm.write` when ``progress``).

    Returns
    -------
    list of dict
        Per stage run or skipped: ``name``, ``kind``, ``status`` (``"done"`` or ``"skipped"``),
        ``seconds`` and what the stage made.
    """
    rec = recipe if isinstance(recipe, Recipe) else Recipe.load(recipe, variables)
    say = report or (tqdm.write if progress else (lambda _msg: None))
    work = Path(rec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    log = _Log(work / LOG_NAME)
    state_path = work / STATE_NAME
    finished = json.loads(state_path.read_text()) if state_path.is_file() else {}
    records = []
    stages = rec.stages if stop_after is None else rec.stages[:max(0, int(stop_after))]
    for k, stage in enumerate(stages, start=1):
        tag = f"[{k}/{len(rec.stages)}] {stage.name} ({stage.kind})"
        # A capped quick check is not the stage itself: it must not make the full run skip it.
        digest = stage.digest() + (f"-max{max_steps}" if max_steps and stage.kind == "train"
                                   else "")
        if finished.get(stage.name, {}).get("digest") == digest:
            say(f"{tag}: finished before, skipped")
            log.write({"event": "skip", "stage": stage.name, "time": time.time()})
            records.append({"name": stage.name, "kind": stage.kind, "status": "skipped",
                            "seconds": 0.0, **finished[stage.name].get("result", {})})
            continue
        chosen = device if device is not None else (
            stage.config.get("device") or stage.args.get("device") or rec.device)
        stage_device = resolve_device(chosen)
        where = f" on {stage_device}" if stage.kind in ("train", "idm") else ""
        say(f"{tag}: running{where}" + (f" - {stage.note}" if stage.note else ""))
        log.write({"event": "stage", "stage": stage.name, "kind": stage.kind,
                   "device": stage_device, "time": time.time()})
        t0 = time.perf_counter()
        if stage.kind == "data":
            result = _run_data(stage)
        elif stage.kind == "idm":
            result = _run_idm(stage, stage_device)
        elif stage.kind == "train":
            result = _run_train(stage, stage_device, log, progress, max_steps)
        elif stage.kind == "depth":
            result = _run_depth(stage)
        else:
            result = _run_export(stage, log)
        seconds = time.perf_counter() - t0
        log.write({"event": "done", "stage": stage.name, "seconds": seconds,
                   "time": time.time(), **result})
        finished[stage.name] = {"digest": digest, "seconds": seconds, "result": result,
                                "finished": time.time()}
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(finished, indent=1))
        tmp.replace(state_path)  # a stage counts as finished only once this is written
        records.append({"name": stage.name, "kind": stage.kind, "status": "done",
                        "seconds": seconds, **result})
    return records
