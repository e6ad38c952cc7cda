"""Samplers: schedule, exact reductions to Euler, CFG, AAM projection, registry."""

from __future__ import annotations

import pytest
import torch

from world.base import WorldError
from world.mvdt import get_sampler, shifted_sigmas
from world.mvdt.samplers import AAMSampler, TTSSDESampler, blur_projection


def _toy_velocity(calls=None):
    """A nonlinear velocity field; ``cond`` is a tensor shifting the target."""

    def velocity(x, sigma, cond):
        if calls is not None:
            calls.append(("u" if cond is None or cond.sum() == 0 else "c", sigma))
        return torch.tanh(x) * (1 + sigma) - cond

    return velocity


def _noise(shape=(2, 3, 2, 8, 6), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_shifted_schedule():
    s = shifted_sigmas(50, 3.0)
    assert len(s) == 51 and s[0] == 1.0 and s[-1] == 0.0
    assert torch.all(s[1:] < s[:-1])
    mid = 0.5
    assert float(shifted_sigmas(2, 3.0)[1]) == pytest.approx(3 * mid / (1 + 2 * mid))
    linear = torch.linspace(1, 0, 11, dtype=torch.float64)
    torch.testing.assert_close(shifted_sigmas(10, 1.0), linear)


def test_euler_is_exact_for_straight_paths():
    # For v = eps - x0 constant along the path, Euler recovers x0 exactly in any step count.
    x0 = _noise(seed=1)
    eps = _noise(seed=2)
    for steps in (1, 4, 50):
        out = get_sampler("euler", num_steps=steps, guidance_scale=1.0)(
            lambda x, s, c: eps - x0, eps, None)
        torch.testing.assert_close(out, x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [4, 12])
def test_tts_sde_reduces_to_euler(steps):
    cond, uncond = torch.full((1,), 0.3), torch.zeros(1)
    ref = get_sampler("euler", num_steps=steps, guidance_scale=5.0)(
        _toy_velocity(), _noise(), cond, uncond)
    for params in ({"eta": 0.0, "interval": 0}, {"eta": 0.0, "lookahead": 0}):
        out = get_sampler("tts-sde", num_steps=steps, guidance_scale=5.0, **params)(
            _toy_velocity(), _noise(), cond, uncond, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, ref)


def test_tts_sde_travel_and_noise_change_the_result_and_cost():
    cond = torch.full((1,), 0.3)
    ref = get_sampler("euler", num_steps=10, guidance_scale=1.0)(_toy_velocity(), _noise(), cond)
    calls = []
    s = TTSSDESampler(num_steps=10, guidance_scale=1.0, eta=0.0, interval=2, lookahead=2)
    travel = s(_toy_velocity(calls), _noise(), cond)
    assert not torch.allclose(travel, ref)
    # Steps 0, 2, 4, 6 roll 2 steps ahead and evaluate there (3 extra calls); step 8 has
    # room for no look-ahead before the last step.
    assert s.num_evals == len(calls) == 10 + 4 * 3
    sde = TTSSDESampler(num_steps=10, guidance_scale=1.0, eta=0.3, interval=0)
    g = torch.Generator().manual_seed(0)
    a = sde(_toy_velocity(), _noise(), cond, generator=g)
    b = sde(_toy_velocity(), _noise(), cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.allclose(a, ref)


def test_tts_sde_noise_term_matches_reference_formula():
    # One step from sigma=1 with interval 0: x' = x + ds v - 1/2 eta^2 score ds + eta sqrt|ds| eps
    x = _noise(seed=3)
    v = _noise(seed=4)
    s = TTSSDESampler(num_steps=2, shift=1.0, guidance_scale=1.0, eta=0.3, interval=0)
    seen = []

    def velocity(xx, sigma, cond):
        seen.append(sigma)
        return v

    g = torch.Generator().manual_seed(7)
    s.num_steps = 2
    out = s(velocity, x, None, generator=g)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    ds = -0.5
    x0_hat = x - 1.0 * v
    score = -(x - 0.0 * x0_hat) / 1.0
    x1 = x + ds * v - 0.5 * 0.09 * score * ds + 0.3 * abs(ds) ** 0.5 * eps
    expected = x1 + (0.0 - 0.5) * v  # last step: plain Euler, no noise
    torch.testing.assert_close(out, expected)
    assert seen == [1.0, 0.5]


def test_cfg_scale_one_is_conditional_only():
    calls = []
    cond = torch.full((1,), 0.3)
    out = get_sampler("euler", num_steps=6, guidance_scale=1.0)(
        _toy_velocity(calls), _noise(), cond, torch.zeros(1))
    assert all(kind == "c" for kind, _ in calls) and len(calls) == 6
    ref = get_sampler("euler", num_steps=6, guidance_scale=1.0)(_toy_velocity(), _noise(), cond)
    assert torch.equal(out, ref)


def test_cfg_combines_cond_and_uncond():
    cond, uncond = torch.full((1,), 0.3), torch.zeros(1)
    s = get_sampler("euler", num_steps=1, guidance_scale=5.0)
    x = _noise()
    out = s(_toy_velocity(), x, cond, uncond)
    v_c, v_u = _toy_velocity()(x, 1.0, cond), _toy_velocity()(x, 1.0, uncond)
    torch.testing.assert_close(out, x - (v_u + 5.0 * (v_c - v_u)))
    with pytest.raises(WorldError, match="unconditional"):
        s(_toy_velocity(), x, cond, None)


def test_guidance_interval_limits_guided_steps():
    cond, uncond = torch.full((1,), 0.3), torch.zeros(1)
    # The whole range is plain CFG; an interval holding no step is the unguided sampler.
    full = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=3.0)(
        _toy_velocity(), _noise(), cond, uncond)
    same = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=3.0,
                       guidance_interval=(0.0, 1.0))(_toy_velocity(), _noise(), cond, uncond)
    assert torch.equal(full, same)
    none = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=3.0,
                       guidance_interval=(0.9, 0.95))(_toy_velocity(), _noise(), cond, uncond)
    plain = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=1.0)(
        _toy_velocity(), _noise(), cond)
    assert torch.equal(none, plain)
    # (0.5, 1) guides the steps at sigma 1, 0.75 and 0.5, not the one at 0.25.
    calls = []
    s = get_sampler("euler", num_steps=4, shift=1.0, guidance_scale=3.0,
                    guidance_interval=(0.5, 1.0))
    s(_toy_velocity(calls), _noise(), cond, uncond)
    assert sorted(sig for kind, sig in calls if kind == "u") == [0.5, 0.75, 1.0]
    assert s.num_evals == 7 and s.params()["guidance_interval"] == [0.5, 1.0]
    assert get_sampler("tts-sde", guidance_interval=(0.2, 0.8)).guidance_interval == (0.2, 0.8)
    with pytest.raises(WorldError, match="interval"):
        get_sampler("euler", guidance_interval=(0.8, 0.2))


def test_aam_reduces_to_euler_and_changes_low_frequencies():
    cond, uncond = torch.full((1,), 0.3), torch.zeros(1)
    ref = get_sampler("euler", num_steps=8)(_toy_velocity(), _noise(), cond, uncond)
    calls = []
    k0 = AAMSampler(num_steps=8, steps_replaced=0)
    assert torch.equal(k0(_toy_velocity(calls), _noise(), cond, uncond), ref)
    assert len(calls) == 16  # no unguided pre-pass when K = 0
    k5 = AAMSampler(num_steps=8, steps_replaced=5)
    out = k5(_toy_velocity(), _noise(), cond, uncond)
    assert k5.num_evals == 8 + 16  # unguided pass + guided pass
    assert not torch.allclose(out, ref)


def test_aam_blur_is_an_orthogonal_projection():
    for n, k in ((8, (0.1, 0.8, 0.1)), (6, (0.2, 0.6, 0.2)), (7, (0.2, 0.6, 0.2))):
        p = blur_projection(n, k)
        torch.testing.assert_close(p @ p, p)
        torch.testing.assert_close(p, p.T)
        rank = torch.linalg.matrix_rank(p)
        assert 0 < rank < n  # keeps a low-frequency subspace, removes the rest
    s = AAMSampler()
    z = _noise()
    low = s.low_pass(z)
    torch.testing.assert_close(s.low_pass(low), low, rtol=1e-5, atol=1e-5)
    # The replacement z' = B(ref) + (z - B(z)) makes the blurred-downsampled view A z' equal
    # A ref exactly (the DDNM range-null-space split), whatever the rest of z is.
    ref, z = _noise(seed=5), _noise(seed=6)
    mixed = s.low_pass(ref) + (z - s.low_pass(z))
    h, w = z.shape[-2:]
    a_h = _blur_matrix(h, s.kernel_h).to(z)
    a_w = _blur_matrix(w, s.kernel_w).to(z)
    torch.testing.assert_close(a_h @ mixed @ a_w.T, a_h @ ref @ a_w.T, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(mixed, ref)


def _blur_matrix(n, kernel, stride=2):
    rows = []
    for c in range(0, n, stride):
        r = torch.zeros(n, dtype=torch.float64)
        for o, k in enumerate(kernel):
            if 0 <= c + o - 1 < n:
                r[c + o - 1] = k
        rows.append(r)
    return torch.stack(rows)


def test_four_step_sampling_and_registry():
    calls = []
    s = get_sampler("euler", num_steps=4, guidance_scale=1.0)
    out = s(_toy_velocity(calls), _noise(), torch.full((1,), 0.3))
    assert out.shape == _noise().shape and len(calls) == 4
    assert get_sampler(s) is s
    assert get_sampler("TTS-SDE", eta=0.1).eta == 0.1
    with pytest.raises(WorldError, match="Unknown sampler"):
        get_sampler("ddim")
    with pytest.raises(WorldError, match="Bad parameters"):
        get_sampler("euler", eta=0.3)
    with pytest.raises(WorldError):
        get_sampler("euler", num_steps=0)


def test_tts_sde_time_travel_visits_the_expected_noise_levels():
    calls = []
    s = TTSSDESampler(num_steps=4, guidance_scale=1.0, eta=0.0, interval=2, lookahead=2)
    s(_toy_velocity(calls), _noise(), torch.full((1,), 0.3))
    sig = shifted_sigmas(4, 3.0).tolist()
    # Step 0: own velocity, roll 2 steps (sigma_1, sigma_2), velocity where it lands (sigma_3);
    # step 2 has no room left to look ahead; steps 1 and 3 are plain.
    expected = [sig[0], sig[1], sig[2], sig[3], sig[1], sig[2], sig[3]]
    assert [sigma for _, sigma in calls] == pytest.approx(expected)
