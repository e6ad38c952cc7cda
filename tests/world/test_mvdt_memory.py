"""History compression: the plan, interpolated kernels, positions and bounded token counts."""

from __future__ import annotations

import torch

from world.mvdt import HistoryBuffer, MVDTModel, history_plan, history_token_count, preset
from world.mvdt.config import default_history_schedule
from world.mvdt.memory import (
    embed_history,
    interpolated_kernel,
    max_history_tokens,
    slot_positions,
)


def test_plan_follows_the_reference_table():
    cfg = preset("small", history_schedule=default_history_schedule(), latent_height=64,
                 latent_width=64)
    plan = history_plan(60, cfg)
    kernels = {s.frame: s.kernel for s in plan}
    assert kernels[0] == 2  # first frame
    assert kernels[59] == kernels[58] == 2  # t-1, t-2
    assert {kernels[f] for f in range(54, 58)} == {4}  # t-3 .. t-6
    assert {kernels[f] for f in range(37, 54)} == {8}  # t-7 .. t-23
    assert {kernels[f] for f in range(21, 37)} == {16}  # then 16
    assert {kernels[f] for f in range(1, 21)} == {32}  # then 32
    assert [s.frame for s in plan] == sorted(s.frame for s in plan)  # oldest first
    # Beyond the table the oldest frames are dropped, the first frame stays.
    long = history_plan(1000, cfg)
    assert long[0].frame == 0 and long[1].frame == 1000 - cfg.max_history_frames
    assert len(long) == 1 + cfg.max_history_frames


def test_token_count_bounded_over_100_chunks():
    cfg = preset("tiny")
    bound = max_history_tokens(cfg)
    buf = HistoryBuffer(cfg)
    buf.reset(torch.zeros(cfg.latent_channels, 1, cfg.latent_height, cfg.latent_width))
    counts = []
    for _ in range(120):
        buf.append(torch.randn(cfg.latent_channels, cfg.chunk_latent_frames, 8, 8))
        counts.append(history_token_count(len(buf), cfg))
        assert len(buf) <= 1 + cfg.max_history_frames
    assert buf.total_frames == 1 + 120 * cfg.chunk_latent_frames
    assert max(counts) == bound
    assert len(set(counts[10:])) == 1  # flat once the schedule is full
    # Full-resolution history would have grown without bound.
    assert bound < 10 * cfg.chunk_tokens < 120 * cfg.chunk_tokens


def test_embedded_history_matches_the_count_and_stays_bounded():
    torch.manual_seed(0)
    model = MVDTModel(preset("tiny")).eval()
    cfg = model.config
    with torch.no_grad():
        for n in (1, 2, 5, 9, 150):
            hist = torch.randn(1, cfg.latent_channels, n, 8, 8)
            tokens = model.embed_history(hist)
            assert len(tokens) == history_token_count(n, cfg) <= max_history_tokens(cfg)
            assert tokens.positions.shape == (len(tokens), 3)
            assert tokens.num_slots == min(n, 1 + cfg.max_history_frames)
            # Temporal indices are sequential, oldest first; the chunk continues after.
            t = tokens.positions[:, 0]
            assert t.min() == 0 and t.max() == tokens.num_slots - 1
            assert torch.all(t[1:] >= t[:-1])


def test_interpolated_kernel_keeps_constant_response():
    torch.manual_seed(0)
    base = torch.randn(8, 3, 1, 2, 2)
    bias = torch.randn(8)
    x = torch.full((1, 3, 1, 16, 16), 0.7)
    ref = torch.nn.functional.conv3d(x, base, bias, stride=(1, 2, 2))[..., 0, 0, 0]
    for k in (4, 8, 16):
        w = interpolated_kernel(base, k, k)
        assert w.shape == (8, 3, 1, k, k)
        out = torch.nn.functional.conv3d(x, w, bias, stride=(1, k, k))
        torch.testing.assert_close(out[..., 0, 0, 0], ref, rtol=1e-5, atol=1e-5)
    assert interpolated_kernel(base, 2, 2) is base


def test_compressed_positions_sit_on_a_coarse_grid_aligned_with_the_chunk():
    pos = slot_positions(3, 8, 8, 4, 4, (2, 2))
    assert pos.shape == (4, 3)
    assert pos[:, 0].tolist() == [3.0] * 4
    # Kernel-4 token centres are between base tokens 0/1 and 2/3.
    assert sorted(set(pos[:, 1].tolist())) == [0.5, 2.5]
    base = slot_positions(0, 8, 8, 2, 2, (2, 2))
    assert sorted(set(base[:, 2].tolist())) == [0.0, 1.0, 2.0, 3.0]


def test_kernel_larger_than_frame_is_one_token():
    cfg = preset("tiny")  # 8x8 latent, schedule goes up to kernel 8
    big = cfg.replace(history_schedule=[[1, 2], [1, 32]])
    hist = torch.randn(2, cfg.latent_channels, 3, 8, 8)
    w = torch.randn(cfg.dim, cfg.latent_channels, 1, 2, 2)
    tokens = embed_history(hist, w, None, big)
    assert len(tokens) == 16 + 16 + 1
    assert tokens.tokens.shape == (2, 33, cfg.dim)


def test_separable_kernel_resize_equals_bilinear_interpolation():
    torch.manual_seed(1)
    base = torch.randn(6, 5, 1, 2, 2)
    for kh, kw in ((4, 4), (8, 4), (16, 16)):
        ref = torch.nn.functional.interpolate(
            base.reshape(30, 1, 2, 2), size=(kh, kw), mode="bilinear", align_corners=False
        ).reshape(6, 5, 1, kh, kw) * 4 / (kh * kw)
        torch.testing.assert_close(interpolated_kernel(base, kh, kw), ref)
