"""One recipe: stages run in order, a finished stage is skipped, an interrupted one resumes, and
the export ships one training log. Real training of a tiny model on real sandbox clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from world.mvdt import load_checkpoint
from world.train import TrainConfig, TrainError, train
from world.training.recipe import Recipe, resolve_device, run_recipe

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "recipes" / "tiny.json"
SHIPPED = ROOT / "world" / "recipes" / "mvdt-sandbox.json"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_first_stage_runs_then_rerun_skips_it_and_resumes_the_next(tmp_path):
    runs = {"runs": str(tmp_path)}
    first = run_recipe(TINY, runs, progress=False, stop_after=1)
    assert [(r["name"], r["status"]) for r in first] == [("01-tiny", "done")]
    assert first[0]["seconds"] < 60
    assert load_checkpoint(first[0]["checkpoint"]).config.frame_height == 16
    stage1_log = (tmp_path / "tiny" / "log.jsonl").read_bytes()

    # Stage 2 is interrupted after one of its two steps (its run keeps last/ state).
    recipe = Recipe.load(TINY, runs)
    train(TrainConfig.from_dict({**recipe.stages[1].config, "device": "cpu"}), progress=False,
          max_steps=1)

    messages = []
    again = run_recipe(TINY, runs, progress=False, report=messages.append)
    assert [(r["name"], r["status"]) for r in again] == [
        ("01-tiny", "skipped"), ("02-tiny-more", "done"), ("export", "done")]
    assert "finished before, skipped" in messages[0] and "on cpu" in messages[1]
    assert (tmp_path / "tiny" / "log.jsonl").read_bytes() == stage1_log  # not trained again
    starts = [r for r in _rows(tmp_path / "tiny-more" / "log.jsonl") if r.get("event") == "start"]
    assert [s["resume"] for s in starts] == [False, True]  # resumed, not restarted
    assert json.loads((tmp_path / "tiny-more" / "last" / "state.json").read_text())["step"] == 2

    # The export ships the recipe's one log: both stages, their steps continuing.
    shipped = tmp_path / "shipped"
    assert sorted(p.name for p in shipped.glob("training_log*")) == ["training_log.jsonl"]
    steps = [(r["stage"], r["step"]) for r in _rows(shipped / "training_log.jsonl")
             if "loss" in r]
    assert steps == [("01-tiny", 1), ("01-tiny", 2), ("01-tiny", 3),
                     ("02-tiny-more", 4), ("02-tiny-more", 5)]
    assert load_checkpoint(shipped).config.frame_width == 16


def test_recipe_errors_say_what_to_fix(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [{"name": "x", "kind": "bake"}]}))
    with pytest.raises(TrainError, match="kind 'bake'"):
        Recipe.load(bad)
    with pytest.raises(TrainError, match="No recipe"):
        Recipe.load(tmp_path / "absent.json")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda"}


def test_shipped_recipe_is_the_history_chain():
    recipe = Recipe.load(SHIPPED, {"runs": "R"})
    trains = [s for s in recipe.stages if s.kind == "train"]
    assert len(trains) == 13 and recipe.stages[-1].kind == "export"
    history = ROOT / "world" / "configs" / "history"
    made = set()  # every path an earlier stage writes
    for stage in recipe.stages:
        if stage.kind == "train":
            name = stage.config["name"]
            old = json.loads((history / f"{name}.json").read_text())
            old.pop("device", None)  # the recipe picks the device (CUDA when present)
            assert json.loads(json.dumps(old).replace("runs/world", "R")) == stage.config
            init = stage.config.get("init_from")
            assert not init or init in made, f"{stage.name} starts from {init}, made later"
            extra = stage.config["data"].get("extra_train_dirs", [])
            assert set(extra) <= made, f"{stage.name} trains on clips not made before it"
            critic = stage.config.get("motion_critic")
            assert not critic or critic in made, f"{stage.name}'s critic is trained later"
            made.add(stage.config["run_dir"] + "/checkpoint")
        elif stage.kind == "idm":
            assert set(stage.args["data"].split(",")) - {"R/data/sandbox-64-train"} <= made
            made.add(stage.args["out"])
        elif stage.kind == "data":
            made.add(stage.args["out"])
    assert recipe.stages[-1].args["run"] + "/checkpoint" in made
    assert json.loads((ROOT / "world" / "checkpoints" / "mvdt-sandbox" / "training.json")
                      .read_text())["run"] == trains[-1].config["name"]


def test_shipped_warp_recipe_extends_the_history_chain_with_the_geometric_memory():
    warp = Recipe.load(ROOT / "world" / "recipes" / "mvdt-warp.json", {"runs": "R"})
    base = Recipe.load(SHIPPED, {"runs": "R"})
    # The same stages as the model it starts from, whose export becomes the warm start...
    assert [s.name for s in warp.stages[:len(base.stages)]] == [s.name for s in base.stages]
    assert warp.stages[len(base.stages) - 1].args["out"] == "R/mvdt-sandbox"
    memory, depth, tune, export = warp.stages[-4:]
    assert [memory.kind, depth.kind, tune.kind, export.kind] == ["train", "depth", "train",
                                                                 "export"]
    assert memory.config["init_from"] == "R/mvdt-sandbox"
    # The memory's learned depth is trained next, the fine-tune warps with it (and ships it).
    assert tune.config["warp_depth"] == depth.args["out"]
    assert tune.config["init_from"] == memory.config["run_dir"] + "/checkpoint"
    assert export.args["run"] == tune.config["run_dir"]
    assert export.args["out"].endswith("mvdt-warp")
    # ...and the warm start is the one the shipped mvdt-warp was trained with, step for step.
    shipped = json.loads((ROOT / "world" / "checkpoints" / "mvdt-warp" / "training.json")
                         .read_text())
    assert tune.config["model"] == shipped["train_config"]["model"]
    assert tune.config["max_steps"] == shipped["step"]
    assert tune.config["warp_depth"] and shipped["train_config"]["warp_depth"]
    assert json.loads((ROOT / "world" / "checkpoints" / "mvdt-warp" / "sampler.json")
                      .read_text()) == export.args["sampler"]
    # The export sets the inference trust in the memory that the shipped config carries.
    assert export.args["warp_trust"] == json.loads(
        (ROOT / "world" / "checkpoints" / "mvdt-warp" / "config.json").read_text())["warp_trust"]
