"""MVDT model configuration: a plain dataclass that round-trips through JSON.

Configs are data (as diffusers' ``ConfigMixin``): everything needed to rebuild a model, including
the action-prompt vocabulary of the action encoder, lives in ``config.json`` next to the weights.
Presets: ``tiny`` (CPU tests), ``small`` (the shipped sandbox model) and full-size ``wan-1.3b``,
``yume-14b`` and ``yume-5b`` configs (never instantiated in tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from world.base import WorldError

CONFIG_VERSION = 1


def default_history_schedule() -> list[list[int]]:
    """Yume's compression table (reference section 3) as ``[count, kernel]`` rows, newest first.

    ``t-1, t-2``: kernel 2; ``t-3 .. t-6``: 4; ``t-7 .. t-23``: 8; then 16, then 32. The first
    (initial) frame is always kept with :attr:`MVDTConfig.history_first_kernel`.
    """
    return [[2, 2], [4, 4], [17, 8], [16, 16], [32, 32]]


@dataclass
class MVDTConfig:
    """Architecture and training hyper-parameters of a Masked Video Diffusion Transformer.

    Parameters
    ----------
    latent_channels : int
        Channels of the latent (or pixel) space the model denoises.
    latent_height, latent_width : int
        Spatial size of one latent frame.
    frame_height, frame_width : int
        Size of the decoded RGB frames (what the world engine shows).
    frames_per_latent : int
        Video frames produced by one latent frame (the codec's temporal stride).
    patch_size : list of int
        (t, h, w) patch of the base patch embedding; Yume uses (1, 2, 2).
    dim, num_heads, ffn_dim : int
        Transformer width, attention heads and feed-forward width.
    num_encoder_blocks, num_decoder_blocks : int
        Blocks before (encoder half, sees kept tokens only in masked training) and after the
        side-interpolator (decoder half, full sequence).
    freq_dim : int
        Sinusoidal timestep embedding size.
    action_dim, action_layers, action_heads, action_ffn_dim, action_max_tokens : int
        Size of the action-prompt encoder; its tokens reach the DiT through cross-attention.
    action_template : str
        Prompt template of :func:`control.actions.action_prompt` (``"14b"`` or ``"5b"``).
    action_vocab : list of str
        Word-level tokenizer vocabulary (built deterministically from the templates when empty).
    chunk_latent_frames : int
        Latent frames generated per step (Yume: 8 when sampling).
    history_first_kernel : int
        Spatial kernel of the first (initial) history frame.
    history_schedule : list of [count, kernel]
        Compression table, newest history frames first; frames beyond the table are dropped
        (the first frame is always kept), which bounds the token count.
    mask_ratio_min, mask_ratio_max : float
        MAE-style mask ratio range, sampled uniformly per training step.
    flow_shift : float
        Timestep shift s of ``sigma' = s sigma / (1 + (s - 1) sigma)`` (training and sampling).
    cfg_drop_prob : float
        Probability of replacing the action prompt by the null prompt in training.
    timestep_scale : float
        Sigma in [0, 1] is fed to the time embedding as ``sigma * timestep_scale`` (Wan: 1000).
    rope_theta : float
        RoPE base.
    prediction : {"velocity", "x0"}
        What the network's head outputs. ``"velocity"`` (Wan/Yume): ``eps - x0`` directly.
        ``"x0"``: the clean chunk, turned into the velocity ``(x_t - x0) / sigma`` inside
        ``forward`` (x-prediction, Li & He 2025, "Back to Basics: Let Denoising Generative Models
        Denoise"); needed when a token (e.g. a 16x16 pixel patch, 768 values) is wider than the
        transformer, which cannot pass full-rank noise through its narrower hidden state.
    refiner_channels : int
        Width of the convolutional refiner of the x0 prediction (0 = none; x0 prediction only).
        It sees the transformer's coarse prediction, the newest clean history frame and the noisy
        chunk at latent resolution and adds a correction. Wan I2V gives its DiT the conditioning
        frame as extra input channels for the same reason: a token wider than the transformer
        (a 16x16 pixel patch is 768 values) cannot carry texture through it, so without a
        per-position path from the last frame every generated frame comes out blurred.
    refiner_action : bool
        Whether the refiner is also told the action (the pooled action-prompt embedding modulates
        its first layer) and each frame's position in the chunk.
    history_noise : float
        Largest standard deviation of Gaussian noise added to the history latents in training
        (drawn uniformly per example), so the model learns to continue from imperfect frames
        such as its own, which keeps long autoregressive runs from degrading.
    warp_sources : list of str
        Geometric memory (empty = off, the shipped model): which remembered frames are
        reprojected into every target camera of the chunk by the commanded motion
        (:class:`world.baselines.CameraWarp`: rotation exactly by homography, translation with
        its fixed ground-plane depth prior) and given to the model: ``"first"`` (the start
        frame, the world's anchor) and/or ``"last"`` (the newest frame). Each source adds
        ``latent_channels + 1`` conditioning channels (the encoded warp and the fraction of its
        pixels that see inside the source frame); see :mod:`world.mvdt.warp`.
    warp_dropout : float
        Probability in training of hiding the warp conditioning of an example (all zeros, as
        when none is given), so the model still works without it.
    warp_gate_bias : float
        Initial logit of each warp source in the output gate (vs 0 for the model's own
        prediction): the x0 estimate is a per-position softmax blend of the refined prediction
        and the warps, each warp weighted by its validity.
    warp_trust : float
        Logit added at inference (never in training) to every warp source's gate: how much more
        the finished model trusts its geometric memory than it learnt to. A training-free knob
        chosen on fresh scenes after training, as a guidance scale is (0 = as trained); the
        shipped ``mvdt-warp`` uses 3 (BENCHMARKS.md, "Trusting the memory more").
    warp_camera : dict
        Overrides of the camera/depth prior: ``fov_deg``, ``camera_height``, ``max_depth``,
        ``far_depth`` (defaults: the sandbox's, as :class:`world.baselines.CameraWarp`).
    warp_interpolation : str
        How the memory resamples remembered frames: ``"bilinear"`` (as the baseline) or
        ``"bicubic"`` (keeps fine detail that repeated bilinear warps wash out).
    codec : dict
        How frames map to latents (data, interpreted by the engine): ``{"type": "pixel",
        "factor": 4}`` for space-to-depth pixels, or whatever :mod:`world.vae` records.
    """

    latent_channels: int = 48
    latent_height: int = 16
    latent_width: int = 16
    frame_height: int = 64
    frame_width: int = 64
    frames_per_latent: int = 1
    patch_size: list[int] = field(default_factory=lambda: [1, 2, 2])
    dim: int = 192
    num_heads: int = 4
    ffn_dim: int = 768
    num_encoder_blocks: int = 4
    num_decoder_blocks: int = 4
    freq_dim: int = 256
    eps: float = 1e-6
    action_dim: int = 64
    action_layers: int = 2
    action_heads: int = 4
    action_ffn_dim: int = 128
    action_max_tokens: int = 48
    action_template: str = "14b"
    action_vocab: list[str] = field(default_factory=list)
    chunk_latent_frames: int = 4
    history_first_kernel: int = 2
    history_schedule: list[list[int]] = field(default_factory=default_history_schedule)
    mask_ratio_min: float = 0.3
    mask_ratio_max: float = 0.5
    flow_shift: float = 3.0
    cfg_drop_prob: float = 0.1
    timestep_scale: float = 1000.0
    rope_theta: float = 10000.0
    prediction: str = "velocity"
    refiner_channels: int = 0
    refiner_action: bool = False
    history_noise: float = 0.0
    warp_sources: list[str] = field(default_factory=list)
    warp_dropout: float = 0.1
    warp_gate_bias: float = -3.0
    warp_trust: float = 0.0
    warp_camera: dict[str, float] = field(default_factory=dict)
    warp_interpolation: str = "bilinear"
    codec: dict[str, Any] = field(default_factory=lambda: {"type": "pixel", "factor": 4})
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.patch_size = [int(p) for p in self.patch_size]
        self.history_schedule = [[int(c), int(k)] for c, k in self.history_schedule]
        self.warp_sources = [str(w) for w in self.warp_sources]
        self.warp_camera = {str(k): float(v) for k, v in self.warp_camera.items()}
        if not self.action_vocab:
            from world.mvdt.action_encoder import build_vocab

            self.action_vocab = build_vocab()
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`WorldError` if the numbers cannot build a model."""
        problems = []
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            problems.append("patch_size must be three positive integers such as [1, 2, 2]")
        if self.patch_size and self.patch_size[0] != 1:
            problems.append("only a temporal patch of 1 is supported (history frames are patched "
                            "one by one)")
        head = self.dim // max(self.num_heads, 1)
        if self.num_heads < 1 or self.dim % self.num_heads or head % 2 or head < 6:
            problems.append("dim must be divisible by num_heads with an even head size >= 6")
        if self.action_dim % self.action_heads:
            problems.append("action_dim must be divisible by action_heads")
        ph, pw = self.patch_size[1:] if len(self.patch_size) == 3 else (1, 1)
        if self.latent_height % ph or self.latent_width % pw:
            problems.append("latent_height/latent_width must be multiples of the patch size")
        if not 0.0 <= self.mask_ratio_min <= self.mask_ratio_max < 1.0:
            problems.append("mask ratios must satisfy 0 <= mask_ratio_min <= mask_ratio_max < 1")
        if self.flow_shift <= 0:
            problems.append("flow_shift must be positive")
        if not 0.0 <= self.cfg_drop_prob <= 1.0:
            problems.append("cfg_drop_prob must lie in [0, 1]")
        if min(self.chunk_latent_frames, self.num_encoder_blocks, self.num_decoder_blocks) < 1:
            problems.append("chunk_latent_frames and block counts must be at least 1")
        for count, kernel in self.history_schedule:
            if count < 0 or kernel < 1 or kernel % ph or kernel % pw:
                problems.append(f"history_schedule row [{count}, {kernel}] needs count >= 0 and "
                                "a kernel that is a multiple of the patch size")
        if self.history_first_kernel % ph or self.history_first_kernel % pw:
            problems.append("history_first_kernel must be a multiple of the patch size")
        if self.prediction not in ("velocity", "x0"):
            problems.append("prediction must be 'velocity' or 'x0'")
        if self.refiner_channels < 0 or (self.refiner_channels and self.prediction != "x0"):
            problems.append("refiner_channels must be >= 0 and needs prediction 'x0'")
        if self.refiner_action and not self.refiner_channels:
            problems.append("refiner_action needs refiner_channels > 0")
        if self.history_noise < 0:
            problems.append("history_noise must be >= 0")
        if any(w not in ("first", "last") for w in self.warp_sources) or len(
                set(self.warp_sources)) != len(self.warp_sources):
            problems.append("warp_sources must list distinct entries of 'first' and 'last'")
        if self.warp_sources and not self.refiner_channels:
            problems.append("warp_sources needs refiner_channels > 0 (the warp is blended in "
                            "by the refiner)")
        if not 0.0 <= self.warp_dropout <= 1.0:
            problems.append("warp_dropout must lie in [0, 1]")
        if not math.isfinite(self.warp_trust):
            problems.append("warp_trust must be a finite number")
        unknown_cam = set(self.warp_camera) - {"fov_deg", "camera_height", "max_depth",
                                               "far_depth"}
        if unknown_cam:
            problems.append(f"warp_camera has unknown keys {sorted(unknown_cam)}")
        from world.baselines import INTERPOLATIONS

        if self.warp_interpolation not in INTERPOLATIONS:
            problems.append(f"warp_interpolation must be one of {list(INTERPOLATIONS)}")
        if self.action_template not in ("14b", "5b"):
            problems.append("action_template must be '14b' or '5b'")
        if problems:
            raise WorldError("Invalid MVDT config: " + "; ".join(problems) + ".")

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def tokens_per_frame(self) -> int:
        """Tokens of one full-resolution latent frame."""
        _, ph, pw = self.patch_size
        return (self.latent_height // ph) * (self.latent_width // pw)

    @property
    def chunk_tokens(self) -> int:
        return self.chunk_latent_frames * self.tokens_per_frame

    @property
    def max_history_frames(self) -> int:
        """History latent frames kept besides the first frame."""
        return sum(c for c, _ in self.history_schedule)

    @property
    def warp_channels(self) -> int:
        """Conditioning channels of the geometric memory (0 when it is off)."""
        return len(self.warp_sources) * (self.latent_channels + 1)

    @property
    def frames_per_chunk(self) -> int:
        return self.chunk_latent_frames * self.frames_per_latent

    def num_parameters(self) -> int:
        """Parameter count of the model this config builds (without building it)."""
        d, f, c = self.dim, self.ffn_dim, self.latent_channels
        p = math.prod(self.patch_size)
        attn = 2 * (4 * d * d + 4 * d) + 4 * d  # self + cross attention, qk RMSNorm weights
        block = attn + 2 * d * f + f + d + 2 * d + 6 * d  # ffn, norm2 affine, scale-shift table
        n_blocks = self.num_encoder_blocks + self.num_decoder_blocks + 1
        a, af = self.action_dim, self.action_ffn_dim
        layer = 4 * a * a + 4 * a + 2 * a * af + af + a + 4 * a
        n_emb = len(self.action_vocab) + self.action_max_tokens + 2
        action = n_emb * a + self.action_layers * layer
        cond = self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d + a * d + d + d * d + d
        embed = c * p * d + d + (len(self.history_schedule) + 1) * d + d
        out = d * c * p + c * p + 2 * d
        r = self.refiner_channels
        if r:
            extra = 2 if self.refiner_action else 1
            out += (3 * c + extra) * r * 9 + r + r * r * 9 + r + r * c * 9 + c
            out += (d * 2 * r + 2 * r) if self.refiner_action else 0
            if self.warp_sources:
                cw, s = self.warp_channels, len(self.warp_sources)
                out += cw * r * 9 + r * s * c * 9 + s * c  # refiner input, gate conv
                embed += cw * p * d  # token-level warp embedding (no bias)
        return n_blocks * block + action + cond + embed + out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MVDTConfig:
        """Build a config from a dict; unknown keys or wrong types raise :class:`WorldError`."""
        if not isinstance(data, dict):
            raise WorldError("An MVDT config must be a JSON object; the file holds something else.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise WorldError(f"MVDT config has unknown keys {unknown}; it was written by another "
                             "version or another model, re-export it with this version.")
        if int(data.get("version", CONFIG_VERSION)) > CONFIG_VERSION:
            raise WorldError(f"MVDT config version {data['version']} is newer than this code "
                             f"({CONFIG_VERSION}); update Yume BCI to load it.")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            if isinstance(err, WorldError):
                raise
            raise WorldError(f"MVDT config has an invalid value ({err}); fix config.json.") from err

    @classmethod
    def from_json(cls, text: str) -> MVDTConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise WorldError(f"MVDT config is not valid JSON ({err}); the file is damaged."
                             ) from err
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> MVDTConfig:
        path = Path(path)
        if not path.is_file():
            raise WorldError(f"No MVDT config at {path}; point to a checkpoint folder with "
                             "config.json.")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def replace(self, **changes: Any) -> MVDTConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _tiny() -> MVDTConfig:
    return MVDTConfig(
        latent_channels=12, latent_height=8, latent_width=8, frame_height=16, frame_width=16,
        dim=24, num_heads=2, ffn_dim=48, num_encoder_blocks=2, num_decoder_blocks=2, freq_dim=32,
        action_dim=16, action_heads=2, action_ffn_dim=32, chunk_latent_frames=2,
        history_schedule=[[2, 2], [2, 4], [3, 8]], codec={"type": "pixel", "factor": 2},
    )


def _small() -> MVDTConfig:
    # 64x64 RGB frames as 48-channel 16x16 space-to-depth pixels (factor 4): 64 tokens a frame.
    return MVDTConfig(
        latent_channels=48, latent_height=16, latent_width=16, frame_height=64, frame_width=64,
        dim=192, num_heads=4, ffn_dim=768, num_encoder_blocks=4, num_decoder_blocks=4,
        freq_dim=128, action_dim=64, action_heads=4, action_ffn_dim=128, chunk_latent_frames=4,
        history_schedule=[[2, 2], [4, 4], [17, 8], [16, 16]], codec={"type": "pixel", "factor": 4},
    )


def _wan_1_3b() -> MVDTConfig:
    # Wan2.1-T2V-1.3B sizes on the Wan2.1 VAE (4x8x8, 16 channels), 480x832 video.
    return MVDTConfig(
        latent_channels=16, latent_height=60, latent_width=104, frame_height=480, frame_width=832,
        frames_per_latent=4, dim=1536, num_heads=12, ffn_dim=8960, num_encoder_blocks=15,
        num_decoder_blocks=15, freq_dim=256, action_dim=4096, action_heads=32, action_ffn_dim=10240,
        action_layers=2, chunk_latent_frames=8, codec={"type": "wan2.1-vae"},
    )


def _yume_14b() -> MVDTConfig:
    # Wan2.1-I2V-14B: 40 blocks of width 5120, 704x1280 video, 8 latent frames per chunk.
    return MVDTConfig(
        latent_channels=16, latent_height=88, latent_width=160, frame_height=704, frame_width=1280,
        frames_per_latent=4, dim=5120, num_heads=40, ffn_dim=13824, num_encoder_blocks=20,
        num_decoder_blocks=20, freq_dim=256, action_dim=4096, action_heads=32, action_ffn_dim=10240,
        chunk_latent_frames=8, codec={"type": "wan2.1-vae"},
    )


def _yume_5b() -> MVDTConfig:
    # Wan2.2-TI2V-5B: 30 blocks of width 3072 on the Wan2.2 VAE (4x16x16, 48 channels).
    return MVDTConfig(
        latent_channels=48, latent_height=44, latent_width=80, frame_height=704, frame_width=1280,
        frames_per_latent=4, dim=3072, num_heads=24, ffn_dim=14336, num_encoder_blocks=15,
        num_decoder_blocks=15, freq_dim=256, action_dim=4096, action_heads=32, action_ffn_dim=10240,
        action_template="5b", chunk_latent_frames=8, codec={"type": "wan2.2-vae"},
    )


PRESETS = {
    "tiny": _tiny, "small": _small, "wan-1.3b": _wan_1_3b, "yume-14b": _yume_14b,
    "yume-5b": _yume_5b,
}


def preset(name: str, **overrides: Any) -> MVDTConfig:
    """A named config (``tiny``, ``small``, ``wan-1.3b``, ``yume-14b``, ``yume-5b``)."""
    if name not in PRESETS:
        raise WorldError(f"Unknown MVDT preset {name!r}; use one of {', '.join(PRESETS)}.")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
