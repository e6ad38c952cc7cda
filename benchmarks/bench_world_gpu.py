"""GPU speed of the world model: per-chunk latency, frames per second, peak memory, VAE decode.

What runs is the project's MVDT pipeline (:class:`world.mvdt.pipeline.MVDTPipeline`: history
compression, action cross-attention, Euler flow matching with classifier-free guidance,
residual caching) with random weights at the sizes of the Wan transformers Yume builds on, and
the Wan VAE decoder of the same family (``diffusers.AutoencoderKLWan``, config from
:mod:`world.wan.configs`), built on the GPU in bfloat16; nothing is downloaded. Speed does not
depend on the weights' values.

- ``1.3b``: MVDT preset ``wan-1.3b`` (Wan2.1-T2V-1.3B widths: 30 blocks of 1536) on the Wan 2.1
  VAE (16 channels, 4x8x8 compression);
- ``5b``: MVDT preset ``yume-5b`` (Wan2.2-TI2V-5B widths: 30 blocks of 3072) on the Wan 2.2 VAE
  (48 channels, 4x16x16), the base of Yume 1.5.

Rows: each model at 352x640 and 544x960 pixels, 50 steps with CFG 5 (Yume's baseline, two model
calls a step) and 4 steps without CFG (a distilled student, one call a step), residual caching
off and on (the ``--cache-blocks`` middle blocks reuse their residual every other call; which
blocks does not change the speed, only how many). The history is the steady state of a long run
(first frame + the full compression schedule; ``--history first`` for the first chunk). A chunk
is ``chunk_latent_frames`` latent frames = 4x as many video frames. "DiT fps" counts only
sampling; "fps incl. decode" adds the VAE decode of the chunk (done with the previous latent
frame in front, as the causal VAE needs, that frame's picture dropped).

Time cap: before each row the cost is predicted from the model-call time measured at warm-up;
a row that would overrun ``--time-limit`` is measured at 2 and 4 steps and extrapolated
linearly to its step count (marked ``~``), or skipped when even that does not fit. Estimate on
one H200 (about 0.1-0.45 s a call for 1.3B at 352x640-544x960, 0.07-0.2 s for 5B): 4-6 minutes
in all, so the default cap of 420 s leaves room for start-up.

Usage::

    python benchmarks/bench_world_gpu.py                       # CUDA machine: the full table
    python benchmarks/bench_world_gpu.py --models 5b --sizes 544x960 --json out.json
    python benchmarks/bench_world_gpu.py --tiny                # CPU smoke run, seconds

Without CUDA (and without ``--tiny``) it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.actions import Action  # noqa: E402
from world.mvdt import MVDTModel, MVDTPipeline, ResidualCache, preset  # noqa: E402
from world.mvdt.memory import history_token_count  # noqa: E402
from world.wan.configs import family, tiny_family  # noqa: E402

# Our model size -> (MVDT preset, Wan family whose VAE it decodes with).
MODELS = {"1.3b": ("wan-1.3b", "wan2.1-i2v-14b"), "5b": ("yume-5b", "wan2.2-ti2v-5b")}
STUDENT_STEPS = 8  # rows with at most this many steps are a distilled student: no CFG
NEEDS_GPU = ("bench_world_gpu needs a CUDA GPU and found none; nothing was measured "
             "(run with --tiny for the CPU smoke test).")


@dataclass
class Row:
    """One measured configuration."""

    model: str
    params_b: float
    size: str
    latent: str
    chunk_tokens: int
    history_tokens: int
    steps: int
    guidance: float
    cache: str
    frames: int
    calls: int = 0
    chunk_s: float = float("nan")
    decode_s: float = float("nan")
    peak_gib: float = float("nan")
    decode_peak_gib: float = float("nan")
    note: str = ""
    timed_chunks: int = 0

    @property
    def dit_fps(self) -> float:
        return self.frames / self.chunk_s

    @property
    def fps(self) -> float:
        return self.frames / (self.chunk_s + self.decode_s)


class Clock:
    """Wall-clock budget of the whole run."""

    def __init__(self, limit: float) -> None:
        self.start, self.limit = time.perf_counter(), float(limit)

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 352x640") from err
    return h, w


def build_case(name: str, height: int, width: int, tiny: bool, chunk_latent_frames: int | None,
               device: str, dtype: torch.dtype):
    """Random-weight MVDT model and Wan VAE of model size ``name`` for ``height x width``."""
    from diffusers import AutoencoderKLWan
    from diffusers.utils import logging as diffusers_logging

    from world.wan.engine import WanVAECodec

    preset_name, fam_name = MODELS[name]
    fam = tiny_family(fam_name) if tiny else family(fam_name)
    s = fam.compression[1]
    if height % (2 * s) or width % (2 * s):
        raise SystemExit(f"{height}x{width} is not a multiple of {2 * s} pixels, which the "
                         f"{name} VAE ({s}x) and 2x2 patches need; choose another --sizes.")
    over = {"latent_channels": fam.latent_channels, "latent_height": height // s,
            "latent_width": width // s, "frame_height": height, "frame_width": width,
            "frames_per_latent": fam.compression[0]}
    if chunk_latent_frames:
        over["chunk_latent_frames"] = int(chunk_latent_frames)
    cfg = preset("tiny" if tiny else preset_name, **over)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a 5B model never sits on the host
        model = MVDTModel(cfg)
        vae = AutoencoderKLWan(**fam.vae)
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # random weights: no float32-module advice wanted
    model, vae = model.to(dtype).eval(), vae.to(dtype).eval()
    diffusers_logging.set_verbosity(level)
    return model, WanVAECodec(vae, dtype)


def _history(cfg, which: str, device: str) -> torch.Tensor:
    n = 1 if which == "first" else 1 + cfg.max_history_frames
    g = torch.Generator().manual_seed(1)
    return torch.randn(cfg.latent_channels, n, cfg.latent_height, cfg.latent_width,
                       generator=g).to(device)


def _middle_blocks(n_blocks: int, k: int) -> list[int]:
    k = max(0, min(k, n_blocks - 2))
    first = (n_blocks - k) // 2
    return list(range(first, first + k))


def plan_row(steps: int, calls: int, per_call: float, repeats: int, seconds_left: float) -> str:
    """How to measure a row in the time left: ``"full"`` (``repeats`` whole chunks),
    ``"extrapolate"`` (2 and 4 steps, then linear in the step count) or ``"skip"``."""
    if repeats * calls * per_call <= seconds_left:
        return "full"
    if steps > 4 and 6 * calls / steps * per_call <= seconds_left:
        return "extrapolate"
    return "skip"


def time_chunk(pipe: MVDTPipeline, history, device: str, autocast, repeats: int
               ) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeats`` chunks (synchronised) and the last latents."""
    best, out = float("inf"), None
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad(), autocast():
            out = pipe.generate_latents(history, Action("W", "→"), generator=gen)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def time_decode(codec, latents: torch.Tensor, device: str, repeats: int) -> float:
    """Best wall time of decoding one chunk (previous latent frame in front) to uint8 frames."""
    z = torch.cat([latents[:, :1], latents], dim=1)[None].float()  # (1, C, 1 + F, h, w)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        frames = codec.decode(z)[1:]
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    assert frames.shape[0] == 4 * latents.shape[1]
    return best


def run_model(name: str, size: tuple[int, int], args, clock: Clock, device: str,
              dtype: torch.dtype) -> list[Row]:
    """All rows of one model at one size."""
    h, w = size
    model, codec = build_case(name, h, w, args.tiny, args.chunk_latent_frames, device, dtype)
    cfg = model.config
    if dtype == torch.float32:
        def autocast():
            return nullcontext()
    else:
        def autocast():
            return torch.autocast(device.split(":")[0], dtype=dtype)
    history = _history(cfg, args.history, device)
    n_hist = history.shape[1]
    blocks = _middle_blocks(len(model.blocks), args.cache_blocks)
    # Transformer parameters without the action-prompt encoder (it stands where Wan's umT5
    # text encoder stands, which Wan's "1.3B" / "5B" do not count; it runs once per chunk).
    dit = model.num_parameters() - sum(p.numel() for p in model.action_encoder.parameters())
    base = {"model": name, "params_b": dit / 1e9, "size": f"{h}x{w}",
            "latent": f"{cfg.latent_channels}x{cfg.latent_height}x{cfg.latent_width}",
            "chunk_tokens": cfg.chunk_tokens,
            "history_tokens": history_token_count(n_hist, cfg), "frames": cfg.frames_per_chunk}

    # Warm-up (kernels, allocator) and the cost of one model call, for the time cap.
    warm = MVDTPipeline(model, sampler="euler", num_steps=2, guidance_scale=1.0)
    time_chunk(warm, history, device, autocast, 1)
    t_two, latents = time_chunk(warm, history, device, autocast, 1)
    per_call = t_two / 2
    decode_s = decode_peak = float("nan")
    if args.decode:
        _reset_peak(device)
        time_decode(codec, latents, device, 1)  # warm-up (cuDNN picks its 3D conv kernels)
        decode_s = time_decode(codec, latents, device, args.decode_repeats)
        decode_peak = _peak_gib(device)

    rows = []
    for steps in args.steps:
        g = args.student_guidance if steps <= STUDENT_STEPS else args.guidance
        for cache_on in args.cache:
            row = Row(**base, steps=steps, guidance=g,
                      cache=f"{len(blocks)} blocks, reuse {args.cache_reuse}"
                      if cache_on else "off")
            row.decode_s, row.decode_peak_gib = decode_s, decode_peak
            calls = steps * (2 if g != 1.0 else 1)
            repeats = 1 if steps > STUDENT_STEPS else args.repeats
            predicted = repeats * calls * per_call
            cache = ResidualCache(blocks, args.cache_reuse) if cache_on else None

            def pipe(n, cache=cache, g=g, model=model):
                return MVDTPipeline(model, sampler="euler", num_steps=n, guidance_scale=g,
                                    cache=cache)
            try:
                _reset_peak(device)
                plan = plan_row(steps, calls, per_call, repeats, clock.left() - args.reserve)
                if plan == "full":
                    row.chunk_s, _ = time_chunk(pipe(steps), history, device, autocast, repeats)
                    row.timed_chunks = repeats
                elif plan == "extrapolate":
                    # Linear in steps (every step is the same calls on the same tokens):
                    # measure 2 and 4 steps, extrapolate.
                    t2, _ = time_chunk(pipe(2), history, device, autocast, 1)
                    t4, _ = time_chunk(pipe(4), history, device, autocast, 1)
                    row.chunk_s = t4 + (steps - 4) * (t4 - t2) / 2
                    row.timed_chunks = 2
                    row.note = f"~ from 2 and 4 steps (time limit; predicted {predicted:.0f} s)"
                else:
                    row.note = f"skipped: time limit (predicted {predicted:.0f} s)"
                row.calls = calls
                row.peak_gib = _peak_gib(device)
            except torch.OutOfMemoryError:
                row.note = "out of memory"
                torch.cuda.empty_cache()
            rows.append(row)
            print(f"  {name} {h}x{w} {steps} steps cache {'on' if cache_on else 'off'}: "
                  f"{row.chunk_s:.3f} s/chunk {row.note}", flush=True)
    del model, codec
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def _gib(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"  # NaN: not measured (CPU)


def format_table(rows: list[Row], card: str, dtype: torch.dtype, history: str) -> str:
    import diffusers

    head = (f"World model speed on {card} ({str(dtype).replace('torch.', '')}, torch "
            f"{torch.__version__}, diffusers {diffusers.__version__}; random weights, history: "
            f"{'steady state' if history == 'full' else 'first frame only'})\n")
    cols = ("| model | DiT params (B) | pixels | latent | tokens chunk + history | steps | CFG | "
            "cache | model calls | chunk (s) | DiT fps | VAE decode (s) | fps incl. decode | "
            "peak GiB DiT / decode | note |")
    lines = [head, cols, "|" + "---|" * 15]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params_b:.3g} | {r.size} | {r.latent} | "
            f"{r.chunk_tokens} + {r.history_tokens} | {r.steps} | {r.guidance:g} | {r.cache} | "
            f"{r.calls} | {r.chunk_s:.3f} | {r.dit_fps:.1f} | {r.decode_s:.3f} | {r.fps:.1f} | "
            f"{_gib(r.peak_gib)} / {_gib(r.decode_peak_gib)} | {r.note} |")
    lines.append(f"\nA chunk is {rows[0].frames if rows else '?'} video frames; fps = frames per "
                 "chunk / seconds per chunk. Anchors (published, one card): Matrix-Game 2.0 25 "
                 "fps at 352x640 on H100 (1.8B, 3 steps); Self-Forcing 17 fps at 480x832 on H100 "
                 "(1.3B, 4 steps); Yume 1.5 about 12 fps at 540p on A100 (5B, 4 steps).")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true",
                    help="CPU smoke run: tiny configs, same code path, seconds")
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["1.3b", "5b"])
    ap.add_argument("--sizes", nargs="+", type=_parse_size, default=None,
                    help="pixel sizes HxW (default 352x640 544x960; --tiny: 32x64)")
    ap.add_argument("--steps", nargs="+", type=int, default=None,
                    help="sampler steps (default 50 4; --tiny: 10 2)")
    ap.add_argument("--cache", nargs="+", choices=["off", "on"], default=["off", "on"])
    ap.add_argument("--guidance", type=float, default=5.0, help="CFG of rows with > 8 steps")
    ap.add_argument("--student-guidance", type=float, default=1.0,
                    help="CFG of rows with <= 8 steps (a distilled student: 1 = none)")
    ap.add_argument("--cache-blocks", type=int, default=10, help="blocks whose residual is reused")
    ap.add_argument("--cache-reuse", type=int, default=1, help="calls reusing each residual")
    ap.add_argument("--chunk-latent-frames", type=int, default=None,
                    help="latent frames per chunk (default: the preset's, 8)")
    ap.add_argument("--history", choices=["full", "first"], default="full")
    ap.add_argument("--repeats", type=int, default=3, help="timed chunks of short rows (best of)")
    ap.add_argument("--decode-repeats", type=int, default=1)
    ap.add_argument("--no-decode", dest="decode", action="store_false")
    ap.add_argument("--time-limit", type=float, default=420.0,
                    help="seconds for the whole run; rows beyond it are extrapolated or skipped")
    ap.add_argument("--reserve", type=float, default=20.0,
                    help="seconds kept free for the remaining set-ups")
    ap.add_argument("--device", default=None, help="default cuda (--tiny: cpu)")
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None,
                    help="default bfloat16 on CUDA, float32 on the CPU")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(NEEDS_GPU)
        return 0
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda")
                                          else "float32"))
    args.sizes = args.sizes or ([(32, 64)] if args.tiny else [(352, 640), (544, 960)])
    args.steps = args.steps or ([10, 2] if args.tiny else [50, 4])
    args.cache = [c == "on" for c in args.cache]
    if device.startswith("cuda"):
        card = torch.cuda.get_device_name(torch.device(device))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        card = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "\
               "threads)"
    clock = Clock(args.time_limit)
    print(f"bench_world_gpu on {card}: models {args.models}, sizes "
          f"{['x'.join(map(str, s)) for s in args.sizes]}, steps {args.steps}, time limit "
          f"{args.time_limit:.0f} s", flush=True)
    rows: list[Row] = []
    for name in args.models:
        for size in args.sizes:
            if clock.left() < args.reserve:
                print(f"  {name} {size}: skipped, time limit reached", flush=True)
                continue
            try:
                rows += run_model(name, size, args, clock, device, dtype)
            except torch.OutOfMemoryError:
                print(f"  {name} {size}: out of memory building the model", flush=True)
                gc.collect()
                torch.cuda.empty_cache()
    print()
    print(format_table(rows, card, dtype, args.history))
    print(f"\ntotal wall time {time.perf_counter() - clock.start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"card": card, "dtype": str(dtype), "rows": [
                {**asdict(r), "dit_fps": r.dit_fps, "fps": r.fps} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
