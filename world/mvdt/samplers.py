"""Flow-matching samplers, independent of the model they drive (diffusers scheduler style).

A sampler integrates ``dx/dsigma = v`` from pure noise (sigma = 1) to data (sigma = 0) on the
shifted schedule ``sigma' = s sigma / (1 + (s - 1) sigma)``. It only sees a callable
``velocity(x, sigma, cond) -> v`` and opaque conditioning objects; classifier-free guidance is
``v = v(uncond) + g (v(cond) - v(uncond))`` and is skipped entirely at ``g = 1``. A velocity
callable may carry ``pair(x, sigma, cond, uncond) -> (v_cond, v_uncond)``, both from one batched
call (it must give the same numbers as two calls); guided steps then use it.

Samplers (``get_sampler(name, **params)``):

- ``"euler"``: Euler ODE, 50 steps, shift 3, guidance 5 (Yume's baseline).
- ``"tts-sde"``: time-travel sampling (Yume): optional SDE noise of strength ``eta`` and, every
  ``interval`` steps, a look-ahead of ``lookahead`` Euler steps whose velocity replaces the one of
  the current step. ``eta = 0`` and ``interval = 0`` (or ``lookahead = 0``) is exactly Euler.
- ``"aam"``: anti-artifact mechanism: sample once without guidance (``z_orig``), then with
  guidance from the same noise, replacing the coarse part ``B z`` by that of the re-noised
  ``z_orig`` during the first ``K`` steps. ``B = A+ A`` is the orthogonal projection onto the row
  space of ``A``, a separable blur ([0.1, 0.8, 0.1] over H, [0.2, 0.6, 0.2] over W) followed by
  2x downsampling (a square blur would be invertible and give ``B = I``); the update makes the
  blurred, downsampled view of the guided latent equal that of ``z_orig`` (range/null-space
  split as in DDNM). ``K = 0`` is exactly guided Euler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from world.base import WorldError

Velocity = Callable[[torch.Tensor, float, Any], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]


def shifted_sigmas(num_steps: int, shift: float = 3.0) -> torch.Tensor:
    """``num_steps + 1`` noise levels from 1 to 0 (float64), warped by ``shift``."""
    sigma = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


class Sampler:
    """Euler ODE sampler with classifier-free guidance.

    Parameters
    ----------
    num_steps : int
        Sampler steps (Yume: 50; a distilled student: 4).
    shift : float
        Schedule shift s (Yume: 3).
    guidance_scale : float
        Classifier-free guidance on the action (Yume: 5; 1 = off, one model call per step).
    guidance_interval : (float, float)
        Noise levels ``(low, high)`` at which guidance is applied; steps outside it make one
        unguided call. Guidance at high noise sets where the camera goes, at low noise it mostly
        saturates colours (Kynkäänniemi et al. 2024, "guidance in a limited interval").
        ``(0, 1)``: every step.
    """

    name = "euler"

    def __init__(
        self, num_steps: int = 50, shift: float = 3.0, guidance_scale: float = 5.0,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if int(num_steps) < 1:
            raise WorldError(f"A sampler needs at least 1 step, got {num_steps}.")
        if shift <= 0:
            raise WorldError(f"The schedule shift must be positive, got {shift}.")
        low, high = (float(v) for v in guidance_interval)
        if not 0.0 <= low <= high <= 1.0:
            raise WorldError(f"The guidance interval must be 0 <= low <= high <= 1, got "
                             f"{list(guidance_interval)}.")
        self.num_steps = int(num_steps)
        self.shift = float(shift)
        self.guidance_scale = float(guidance_scale)
        self.guidance_interval = (low, high)
        self.num_evals = 0  # model calls of the last run (benchmarks)

    def params(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "shift": self.shift,
                "guidance_scale": self.guidance_scale,
                "guidance_interval": list(self.guidance_interval)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def sigmas(self) -> torch.Tensor:
        return shifted_sigmas(self.num_steps, self.shift)

    def guided(self, velocity: Velocity, x: torch.Tensor, sigma: float, cond: Any, uncond: Any,
               scale: float | None = None) -> torch.Tensor:
        """Classifier-free guided velocity (one call when the scale is 1 or ``sigma`` lies outside
        the guidance interval)."""
        g = self.guidance_scale if scale is None else scale
        low, high = self.guidance_interval
        guide = g != 1.0 and low - 1e-9 <= float(sigma) <= high + 1e-9
        pair = getattr(velocity, "pair", None)
        if guide and uncond is not None and pair is not None:
            # Both velocities in one batched call of the model (``velocity.pair``, optional):
            # the same two numbers, fewer calls.
            v_c, v_u = pair(x, sigma, cond, uncond)
            self.num_evals += 2
            return v_u + g * (v_c - v_u)
        v_c = velocity(x, sigma, cond)
        self.num_evals += 1
        if not guide:
            return v_c
        if uncond is None:
            raise WorldError("Guidance scale != 1 needs an unconditional input (the null prompt); "
                             "pass uncond or set guidance_scale=1.")
        v_u = velocity(x, sigma, uncond)
        self.num_evals += 1
        return v_u + g * (v_c - v_u)

    def __call__(
        self,
        velocity: Velocity,
        noise: torch.Tensor,
        cond: Any,
        uncond: Any = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Integrate from ``noise`` (sigma = 1) to a sample (sigma = 0)."""
        self.num_evals = 0
        return self._euler(velocity, noise, cond, uncond, None, callback)

    def _euler(self, velocity, x, cond, uncond, scale, callback, hook=None) -> torch.Tensor:
        sig = self.sigmas().tolist()
        for i in range(self.num_steps):
            v = self.guided(velocity, x, sig[i], cond, uncond, scale)
            x = x + (sig[i + 1] - sig[i]) * v
            if hook is not None:
                x = hook(i, x)
            if callback is not None:
                callback(i, x)
        return x


class EulerSampler(Sampler):
    """Alias of :class:`Sampler` under its registry name."""


class TTSSDESampler(Sampler):
    """Time-travel sampling with an SDE (Yume, reference section 4).

    At step i: ``v_i`` = guided velocity at ``(x_i, sigma_i)``; ``x' = x_i + dsigma v_i``; with
    ``eta > 0`` add ``-1/2 eta^2 score dsigma + eta sqrt(|dsigma|) eps`` where
    ``x0_hat = x_i - sigma_i v_i`` and ``score = -(x_i - (1 - sigma_i) x0_hat) / sigma_i^2``.
    Every ``interval`` steps (i % interval == 0), roll ``lookahead`` Euler steps forward from
    ``x'``, take the velocity seen at the point reached, and redo step i with it (same noise).
    No noise is added on the last step (sigma reaches 0 exactly); a look-ahead never runs past
    the last non-zero sigma.

    Parameters
    ----------
    eta : float
        SDE noise strength (0.3 in Yume; 0 = ODE).
    interval : int
        Travel every this many steps (2; 0 = never).
    lookahead : int
        Steps rolled forward (2; 0 = never).
    """

    name = "tts-sde"

    def __init__(self, num_steps: int = 50, shift: float = 3.0, guidance_scale: float = 5.0,
                 eta: float = 0.3, interval: int = 2, lookahead: int = 2,
                 guidance_interval: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(num_steps, shift, guidance_scale, guidance_interval)
        if eta < 0 or interval < 0 or lookahead < 0:
            raise WorldError("TTS-SDE needs eta >= 0, interval >= 0 and lookahead >= 0.")
        self.eta, self.interval, self.lookahead = float(eta), int(interval), int(lookahead)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eta": self.eta, "interval": self.interval,
                "lookahead": self.lookahead}

    def _sde_term(self, x, v, s, ds, eps) -> torch.Tensor:
        x0_hat = x - s * v
        score = -(x - (1 - s) * x0_hat) / (s * s)
        return -0.5 * self.eta**2 * score * ds + self.eta * abs(ds) ** 0.5 * eps

    def __call__(self, velocity, noise, cond, uncond=None, generator=None, callback=None):
        self.num_evals = 0
        sig = self.sigmas().tolist()
        n = self.num_steps
        x = noise
        for i in range(n):
            s, ds = sig[i], sig[i + 1] - sig[i]
            v = self.guided(velocity, x, s, cond, uncond)
            last = i == n - 1
            use_noise = self.eta > 0 and not last
            eps = torch.randn(x.shape, generator=generator).to(x) if use_noise else None
            x_new = x + ds * v
            if use_noise:
                x_new = x_new + self._sde_term(x, v, s, ds, eps)
            # Time travel: the look-ahead stays on sigmas > 0 (j + 1 <= n - 1).
            steps = min(self.lookahead, n - 1 - (i + 1))
            if self.interval and self.lookahead and i % self.interval == 0 and steps > 0:
                y = x_new
                for j in range(i + 1, i + 1 + steps):
                    y = y + (sig[j + 1] - sig[j]) * self.guided(velocity, y, sig[j], cond, uncond)
                v = self.guided(velocity, y, sig[i + 1 + steps], cond, uncond)
                x_new = x + ds * v
                if use_noise:
                    x_new = x_new + self._sde_term(x, v, s, ds, eps)
            x = x_new
            if callback is not None:
                callback(i, x)
        return x


def blur_projection(n: int, kernel: tuple[float, ...], stride: int = 2) -> torch.Tensor:
    """``A+ A`` for a 1-D blur-and-downsample ``A`` (rows: ``kernel`` centred every ``stride``).

    The result is an orthogonal projection (symmetric, idempotent) onto the subspace ``A`` sees
    (rank ``ceil(n / stride)``); taps falling outside the signal are dropped.
    """
    k = torch.tensor(kernel, dtype=torch.float64)
    half = len(kernel) // 2
    rows = []
    for c in range(0, n, stride):
        r = torch.zeros(n, dtype=torch.float64)
        for o in range(len(kernel)):
            j = c + o - half
            if 0 <= j < n:
                r[j] = k[o]
        rows.append(r)
    a = torch.stack(rows)
    return torch.linalg.pinv(a) @ a


class AAMSampler(Sampler):
    """Anti-artifact mechanism (Yume, reference section 4), training-free.

    Parameters
    ----------
    steps_replaced : int
        K, the first steps in which the low frequencies come from the unguided sample (5;
        0 = plain guided Euler, no unguided pass).
    kernel_h, kernel_w : tuple of float
        Blur over H ([0.1, 0.8, 0.1]) and W ([0.2, 0.6, 0.2]).
    stride : int
        Downsampling of ``A`` (2).
    """

    name = "aam"

    def __init__(self, num_steps: int = 50, shift: float = 3.0, guidance_scale: float = 5.0,
                 steps_replaced: int = 5, kernel_h=(0.1, 0.8, 0.1), kernel_w=(0.2, 0.6, 0.2),
                 stride: int = 2, guidance_interval: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(num_steps, shift, guidance_scale, guidance_interval)
        if steps_replaced < 0 or stride < 1:
            raise WorldError("AAM needs steps_replaced >= 0 and stride >= 1.")
        self.steps_replaced = int(steps_replaced)
        self.kernel_h, self.kernel_w = tuple(kernel_h), tuple(kernel_w)
        self.stride = int(stride)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "steps_replaced": self.steps_replaced,
                "kernel_h": list(self.kernel_h), "kernel_w": list(self.kernel_w),
                "stride": self.stride}

    def low_pass(self, z: torch.Tensor) -> torch.Tensor:
        """``B(z)`` over the last two axes (H, W)."""
        ph = blur_projection(z.shape[-2], self.kernel_h, self.stride).to(z)
        pw = blur_projection(z.shape[-1], self.kernel_w, self.stride).to(z)
        return ph @ z @ pw.T

    def __call__(self, velocity, noise, cond, uncond=None, generator=None, callback=None):
        self.num_evals = 0
        if self.steps_replaced == 0:
            return self._euler(velocity, noise, cond, uncond, None, callback)
        z_orig = self._euler(velocity, noise, cond, uncond, 1.0, None)
        sig = self.sigmas().tolist()

        def replace_low(i: int, z: torch.Tensor) -> torch.Tensor:
            if i >= self.steps_replaced:
                return z
            s = sig[i + 1]
            ref = (1 - s) * z_orig + s * noise  # z_orig re-noised to the current level
            return self.low_pass(ref) + (z - self.low_pass(z))

        return self._euler(velocity, noise, cond, uncond, None, callback, hook=replace_low)


SAMPLERS: dict[str, type[Sampler]] = {
    "euler": EulerSampler, "tts-sde": TTSSDESampler, "aam": AAMSampler,
}


def get_sampler(name: str | Sampler = "euler", **params: Any) -> Sampler:
    """A sampler by registry name (``"euler"``, ``"tts-sde"``, ``"aam"``) with its parameters."""
    if isinstance(name, Sampler):
        return name
    key = str(name).lower()
    if key not in SAMPLERS:
        raise WorldError(f"Unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}.")
    try:
        return SAMPLERS[key](**params)
    except TypeError as err:
        raise WorldError(f"Bad parameters for sampler {key!r}: {err}.") from err
