"""Checkpoints: exact round trip, config validation, never executing code from a file."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from control.actions import Action
from world.base import WorldError
from world.mvdt import MVDTModel, load_checkpoint, preset, save_checkpoint
from world.mvdt.checkpoint import CONFIG_NAME, WEIGHTS_NAME


def _out(model):
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.latent_channels, cfg.chunk_latent_frames, 8, 8, generator=g)
    h = torch.randn(1, cfg.latent_channels, 4, 8, 8, generator=g)
    with torch.no_grad():
        return model(x, 0.6, model.encode_actions([Action("W+A", "↑→")]), h)


def test_save_load_identical_output(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = load_checkpoint(tmp_path / "ck", expected_config=tiny.config)
    assert loaded.config == tiny.config
    assert torch.equal(_out(loaded), _out(tiny))
    # The action vocabulary travels in config.json.
    saved = json.loads((tmp_path / "ck" / CONFIG_NAME).read_text(encoding="utf-8"))
    assert saved["action_vocab"] == tiny.config.action_vocab


def test_float16_checkpoint_is_half_size_and_close(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "f32")
    save_checkpoint(tiny, tmp_path / "f16", dtype=torch.float16)
    s32 = (tmp_path / "f32" / WEIGHTS_NAME).stat().st_size
    s16 = (tmp_path / "f16" / WEIGHTS_NAME).stat().st_size
    assert s16 < 0.6 * s32
    loaded = load_checkpoint(tmp_path / "f16")
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(_out(loaded), _out(tiny), rtol=0.05, atol=0.05)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious pickle would run on load
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_never_executed(tiny, tmp_path):
    ck = save_checkpoint(tiny, tmp_path / "ck")
    marker = tmp_path / "pwned"
    (ck / WEIGHTS_NAME).write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(WorldError, match="safetensors|corrupt"):
        load_checkpoint(ck)
    assert not marker.exists()
    torch.save({"w": torch.zeros(2)}, ck / WEIGHTS_NAME)  # a torch zip/pickle file
    with pytest.raises(WorldError):
        load_checkpoint(ck)


def test_wrong_header_and_truncated_file(tiny, tmp_path):
    ck = save_checkpoint(tiny, tmp_path / "ck")
    data = (ck / WEIGHTS_NAME).read_bytes()
    (ck / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(WorldError, match="corrupt|truncated|readable"):
        load_checkpoint(ck)
    (ck / WEIGHTS_NAME).write_bytes((10**9).to_bytes(8, "little") + b'{"x": 1}')
    with pytest.raises(WorldError):
        load_checkpoint(ck)
    (ck / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(WorldError):
        load_checkpoint(ck)


def test_other_config_checkpoint_is_rejected(tiny, tmp_path):
    ck = save_checkpoint(tiny, tmp_path / "ck")
    other = preset("tiny", dim=32)
    with pytest.raises(WorldError, match="another MVDT config.*dim"):
        load_checkpoint(ck, expected_config=other)
    # config.json swapped for another model's: the hash in the weights catches it.
    other.save(ck / CONFIG_NAME)
    with pytest.raises(WorldError, match="different config.json"):
        load_checkpoint(ck)


def test_foreign_safetensors_and_missing_pieces(tiny, tmp_path):
    ck = save_checkpoint(tiny, tmp_path / "ck")
    save_file({"weight": torch.zeros(3)}, str(ck / WEIGHTS_NAME))
    with pytest.raises(WorldError, match="not an MVDT checkpoint"):
        load_checkpoint(ck)
    (ck / CONFIG_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(WorldError, match="not valid JSON"):
        load_checkpoint(ck)
    (ck / CONFIG_NAME).unlink()
    with pytest.raises(WorldError, match="config"):
        load_checkpoint(ck)
    with pytest.raises(WorldError, match="yume world train"):
        load_checkpoint(tmp_path / "missing")


def test_diffusers_style_save_and_from_pretrained(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "ck")
    again = MVDTModel.from_pretrained(tmp_path / "ck", expected_config=tiny.config)
    assert torch.equal(_out(again), _out(tiny))
