"""CFG-parallel sampling over two gloo ranks on loopback gives the frames of one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from world.base import WorldError
from world.distributed import (
    build_parser,
    cfg_parallel_sampler,
    init_distributed,
    run_world,
    spawn_worker,
)
from world.mvdt.samplers import get_sampler

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process(argv: list[str]) -> dict:
    return run_world(build_parser().parse_args(argv))


def _same_as_one_process(out: Path, argv: list[str], guided_steps: int, steps: int) -> None:
    ref = _one_process(argv)
    par = np.load(out)
    assert par["frames"].shape == ref["frames"].shape and par["frames"].dtype == np.uint8
    np.testing.assert_allclose(par["latents"], ref["latents"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(par["frames"].astype(int), ref["frames"].astype(int), atol=1)
    assert float(par["divergence"]) == 0.0  # both ranks left with the same latents
    # Same model calls counted for the group as one process makes; rank 0 made only its half
    # of the guided ones (plus every unguided call).
    np.testing.assert_array_equal(par["model_evals"], ref["model_evals"])
    unguided = ref["model_evals"] - 2 * guided_steps
    np.testing.assert_array_equal(par["local_evals"], guided_steps + unguided)
    assert (ref["model_evals"] > steps).all()  # guidance really ran


@pytest.mark.slow
def test_spawned_gloo_ranks_match_one_process_with_sde_cache_and_interval(tmp_path):
    # TTS-SDE draws noise every step, the interval leaves the low-noise steps unguided (rank 0
    # alone, broadcast) and the residual cache keeps per-branch state: all must stay in step.
    out = tmp_path / "frames.npz"
    argv = ["--preset", "tiny", "--sampler", "tts-sde", "--steps", "4", "--eta", "0.3",
            "--guidance", "4", "--guidance-interval", "0.8", "1.0", "--cache-blocks", "1", "2",
            "--cache-reuse", "1", "--chunks", "2", "--action", "W →", "--action", "A ←"]
    mp.spawn(spawn_worker, args=(2, _free_port(), [*argv, "--out", str(out)]), nprocs=2,
             join=True)
    # Guided steps of this schedule: the calls a plain sampler makes with the negative.
    sampler = get_sampler("tts-sde", num_steps=4, guidance_scale=4.0, eta=0.3,
                          guidance_interval=(0.8, 1.0))
    branches: list[str] = []
    sampler(lambda x, s, c: (branches.append(c), torch.zeros_like(x))[1],
            torch.zeros(1, 2, 1, 2, 2), "cond", "uncond")
    guided = branches.count("uncond")
    assert 0 < guided < branches.count("cond")  # some steps guided, some not
    _same_as_one_process(out, argv, guided, 4)


@pytest.mark.slow
def test_torchrun_launcher_matches_one_process(tmp_path):
    out = tmp_path / "frames.npz"
    argv = ["--preset", "tiny", "--steps", "3", "--guidance", "5", "--chunks", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "world.distributed",
         *argv, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CFG parallel over 2 ranks" in proc.stdout
    _same_as_one_process(out, argv, guided_steps=3, steps=3)


def test_needs_a_process_group_of_two_ranks(monkeypatch):
    sampler = get_sampler("euler", num_steps=2)
    with pytest.raises(WorldError, match="process group"):
        cfg_parallel_sampler(sampler)
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(WorldError, match="torchrun"):
        init_distributed()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        with pytest.raises(WorldError, match="exactly 2 ranks"):
            cfg_parallel_sampler(sampler)
    finally:
        dist.destroy_process_group()


def test_launcher_without_torchrun_says_how_to_start(monkeypatch, capsys):
    from world.distributed import main

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert main(["--chunks", "1"]) == 2
    assert "torchrun --nproc_per_node=2" in capsys.readouterr().err
