"""``yume train``: cross-validate decoding pipelines on recordings and save the best as a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.replace(",", "-").split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a band; write LOW-HIGH, e.g. 8-30"
                                         ) from None
    return lo, hi


def _window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a window; write TMIN:TMAX in seconds after the cue, e.g. 0.5:2.5"
        ) from None
    return lo, hi


def _mapping(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"{part!r} is not OLD=NEW; write e.g. T1=left_hand")
        out[key.strip()] = value.strip()
    return out


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _lengths(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(t) for t in _csv(text))
    except ValueError:
        out = ()
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of window lengths; write seconds, e.g. 1,2")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a decoder on recordings (CV, report, bundle)",
        description=(
            "Epoch the recordings (Yume session folders, BIDS or EDF/GDF/BDF/BrainVision files "
            "with an _events.csv/.tsv beside them), score each candidate pipeline with "
            "stratified k-fold CV and a chronological split, print accuracy, balanced accuracy, "
            "Cohen's kappa, the confusion matrix and the Wolpaw ITR, write an HTML+JSON report "
            "and save the best pipeline as a decoder bundle for `yume run`."),
    )
    p.add_argument("recordings", nargs="+", type=Path, help="session folders or EEG files")
    p.add_argument("--paradigm", choices=("mi", "ssvep"), default=None,
                   help="paradigm (default: from the session, else mi)")
    p.add_argument("--classes", type=_csv, default=None,
                   help="classes to use, comma-separated (default: every cue label)")
    p.add_argument("--map", dest="label_map", type=_mapping, default=None,
                   help="rename event labels first, e.g. T1=left_hand,T2=right_hand")
    p.add_argument("--pipelines", type=_csv, default=None,
                   help="candidates (mi: csp_lda,fbcsp_lda,ts_lr,mdm; ssvep: cca,fbcca; "
                        "--asynchronous mi: rc_ts_lr, re-centred online, or any of "
                        "ts_lr,gated_ts_lr,csp_lda,mdm,rc_mdm)")
    p.add_argument("--band", type=_band, default=None,
                   help="pass band in Hz (default: 8-30 for mi, 6-40 for ssvep)")
    p.add_argument("--window", type=_window, default=(0.5, 2.5),
                   help="window after the cue, TMIN:TMAX seconds (default: 0.5:2.5)")
    p.add_argument("--channels", type=_csv, default=None, help="channels to use (default: all EEG)")
    p.add_argument("--resample", type=float, default=None, help="resample to this rate (Hz)")
    p.add_argument("--folds", type=int, default=5, help="stratified CV folds")
    p.add_argument("--chrono-test", type=float, default=0.2,
                   help="fraction of the latest trials held out by the chronological split")
    p.add_argument("--seed", type=int, default=42, help="CV shuffling seed")
    p.add_argument("--step", type=float, default=0.5, help="seconds between online decisions")
    p.add_argument("--decision-s", type=float, default=None,
                   help="seconds per independent decision for the ITR (default: window length)")
    p.add_argument("--crops", type=lambda t: [float(v) for v in _csv(t)] if t != "none" else [],
                   default=[0.5, 1.0, 1.5],
                   help="extra training windows per trial, shifted by these seconds ('none': "
                        "off); scoring always uses --window (default: 0.5,1.0,1.5)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: decoders/<first recording name>)")
    p.add_argument("--asynchronous", action="store_true",
                   help="train for asynchronous control: sliding windows across cues and rest "
                        "periods, rest as a class, and the operating point (threshold, dwell) "
                        "that meets --target-fa with the most hits, chosen by pseudo-online "
                        "cross-validation over the recordings; the bundle carries it and "
                        "`yume run` uses it")
    p.add_argument("--rest", default="rest", help="--asynchronous: label of the rest periods")
    p.add_argument("--target-fa", type=float, default=1.0,
                   help="--asynchronous: most false activations per minute of rest")
    p.add_argument("--windows", type=_lengths, default=None,
                   help="--asynchronous: window lengths (s) pseudo-online CV chooses between, "
                        "comma-separated (default: 1,2 for motor imagery; SSVEP uses the "
                        "length of --window)")
    p.add_argument("--zip", action="store_true", help="write the bundle as a zip")
    p.add_argument("--no-report", action="store_true", help="skip the HTML/JSON report")
    p.set_defaults(func=run)


def _paradigm_of(path: Path) -> str | None:
    import json

    cfg = path / "config.json"
    if path.is_dir() and cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("paradigm", {}).get("kind")
        except (ValueError, AttributeError):
            return None
    return None


def run(args: argparse.Namespace) -> int:
    from calibration.report import write_report
    from calibration.training import TrainingConfig, train_decoder
    from control.bundle import save_bundle

    if args.asynchronous:
        return _run_asynchronous(args)
    paradigm = args.paradigm or _paradigm_of(args.recordings[0]) or "mi"
    config = TrainingConfig(
        paradigm=paradigm, classes=args.classes, band=args.band, tmin=args.window[0],
        tmax=args.window[1], picks=args.channels, resample=args.resample,
        pipelines=args.pipelines, n_folds=args.folds, chrono_test=args.chrono_test,
        seed=args.seed, step_s=args.step, decision_s=args.decision_s, label_map=args.label_map,
        crop_offsets=tuple(args.crops))
    result = train_decoder(args.recordings, config)
    ep = result.epochs
    why = "as given by --classes" if args.classes else "every cue label found"
    print(f"classes: {', '.join(ep.classes)} ({why})")
    if "rest" in ep.classes and not args.classes:
        print("  rest is a class here because rest cues were found; pass --classes to leave it "
              "out, or train with --asynchronous for a no-control state that never fires")
    print(f"{len(ep.y)} trials {ep.counts()}, {len(ep.ch_names)} channels at {ep.sfreq:g} Hz, "
          f"band {config.band[0]:g}-{config.band[1]:g} Hz, window {config.tmin:g}-"
          f"{config.tmax:g} s")
    print(result.table())
    best = next(r for r in result.results if r.name == result.best)
    print(f"best: {best.name}  k-fold accuracy {best.cv['accuracy']:.3f}, balanced "
          f"{best.cv['balanced_accuracy']:.3f}, kappa {best.cv['kappa']:.2f}, ITR "
          f"{best.cv['itr_bits_per_min']:.2f} bits/min at one decision per "
          f"{best.cv['decision_s']:g} s")
    print("confusion matrix (k-fold; rows true, columns predicted):")
    width = max(len(c) for c in best.cv["classes"]) + 1
    print(" " * width + "".join(f"{c:>{width}}" for c in best.cv["classes"]))
    for c, row in zip(best.cv["classes"], best.cv["confusion"], strict=True):
        print(f"{c:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    out = args.out or Path("decoders") / args.recordings[0].name.replace(".", "_")
    bundle_path = save_bundle(result.bundle, out / ("decoder.zip" if args.zip else "decoder"))
    print(f"decoder bundle: {bundle_path}")
    if not args.no_report:
        print(f"report: {write_report(result, out)}")
    return 0


def _run_asynchronous(args: argparse.Namespace) -> int:

    from calibration.async_training import AsyncConfig, train_async

    if (args.paradigm or _paradigm_of(args.recordings[0])) == "ssvep":
        return _run_ssvep_asynchronous(args)
    if not args.classes:
        raise ValueError("--asynchronous needs the movement classes, e.g. "
                         "--classes left_hand,right_hand (rest is added).")
    config = AsyncConfig(classes=tuple(c for c in args.classes if c != args.rest),
                         rest_label=args.rest, label_map=args.label_map,
                         window_s=args.window[1] - args.window[0], step_s=args.step,
                         band=args.band or (8.0, 30.0), target_fa_per_min=args.target_fa,
                         **({"pipelines": tuple(args.pipelines)} if args.pipelines else {}),
                         **({"windows": args.windows} if args.windows else {}))
    result = train_async(args.recordings, config)
    print(f"asynchronous decoder, classes {', '.join(result.bundle.classes)} (rest as a class, "
          f"never a command); {sum(result.n_windows.values())} training windows "
          f"{result.n_windows}")
    print(f"pseudo-online CV ({result.folds}), best operating point of each pipeline:")
    print(f"  {'pipeline':<18} {'threshold':>9} {'dwell s':>7} {'tau s':>5} {'hits':>5} "
          f"{'wrong':>5} {'FA/min':>6} {'cues':>4} {'rest min':>8}")
    for name, c in result.summary()["candidates"].items():
        print(f"  {name + (' *' if name == result.best else ''):<18} {c['threshold']:>9g} "
              f"{c['dwell_s']:>7g} {c['tau_s']:>5g} {c['hit_rate']:>5.2f} "
              f"{c['wrong_rate']:>5.2f} {c['fa_per_min']:>6.2f} {c['n_cues']:>4} "
              f"{c['rest_minutes']:>8.2f}")
    return _save_asynchronous(args, result, config)


def _run_ssvep_asynchronous(args: argparse.Namespace) -> int:
    """SSVEP with a learned no-control state (calibration.ssvep_async)."""

    from calibration.ssvep_async import SSVEPAsyncConfig, train_ssvep_async

    config = SSVEPAsyncConfig(classes=tuple(c for c in args.classes or () if c != args.rest),
                              rest_label=args.rest, label_map=args.label_map,
                              window_s=args.window[1] - args.window[0], step_s=args.step,
                              band=args.band or (6.0, 40.0), target_fa_per_min=args.target_fa,
                              picks=args.channels or "posterior",
                              **({"pipelines": tuple(args.pipelines)} if args.pipelines else {}))
    result = train_ssvep_async(args.recordings, config, progress=True)
    print(f"asynchronous SSVEP decoder, classes {', '.join(result.bundle.classes)} (rest: the "
          f"learned no-control state, never a pick); channels "
          f"{', '.join(result.bundle.ch_names)}; {sum(result.n_windows.values())} training "
          f"windows {result.n_windows}")
    print(f"pseudo-online CV ({result.folds}), chosen operating point of each pipeline:")
    print(f"  {'pipeline':<8} {'threshold':>9} {'dwell s':>7} {'tau s':>5} {'hits':>5} "
          f"{'wrong':>5} {'FA/min':>6} {'pick s':>6} {'gazes':>5} {'rest min':>8}")
    for name, c in result.summary()["candidates"].items():
        lat = c.get("median_latency_s")
        print(f"  {name + (' *' if name == result.best else ''):<8} {c['threshold']:>9g} "
              f"{c['dwell_s']:>7g} {c['tau_s']:>5g} {c['hit_rate']:>5.2f} "
              f"{c['wrong_rate']:>5.2f} {c['fa_per_min']:>6.2f} "
              f"{'' if lat is None else f'{lat:.2f}':>6} {c['n_cues']:>5} "
              f"{c['rest_minutes']:>8.2f}")
    return _save_asynchronous(args, result, config)


def _save_asynchronous(args: argparse.Namespace, result, config) -> int:
    """Save an asynchronous (MI or SSVEP) result: the bundle and asynchronous.json."""
    import json
    from dataclasses import asdict

    from control.bundle import save_bundle

    if not result.meets_target:
        print(f"  no operating point met {args.target_fa:g} false activations per minute; "
              "the bundle carries the one with the fewest")
    out = args.out or Path("decoders") / (args.recordings[0].name.replace(".", "_") + "-async")
    bundle_path = save_bundle(result.bundle, out / ("decoder.zip" if args.zip else "decoder"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "asynchronous.json").write_text(json.dumps(
        result.summary() | {"config": asdict(config)}, indent=2, default=float))
    print(f"decoder bundle: {bundle_path} (operating point: threshold "
          f"{result.chosen.point.threshold:g}, dwell {result.chosen.point.dwell_s:g} s)")
    return 0
