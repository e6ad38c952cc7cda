"""``yume evaluate``: train on some recordings, test on others, offline and pseudo-online."""

from __future__ import annotations

import argparse
from pathlib import Path

from gui.commands.train import _csv, _lengths, _mapping, _window


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="train on some recordings, test on others (offline and pseudo-online)",
        description=(
            "Offline: every pipeline trained on the --train recordings and tested on the "
            "--test ones, with n, chance, an exact binomial 95% interval and a p-value, beside "
            "a reference TS+LR built from pyRiemann. Pseudo-online: the test recordings played "
            "through the live decoding path (the same decoder, policy, window, step, dwell and "
            "refractory period as `yume run`) and scored per cue (first command right, wrong "
            "or none, time to command) and per minute of rest (false activations), for the "
            "cue-locked decoder of `yume train` with the default policy and for an "
            "asynchronous decoder (rest as a class) at the operating point chosen by "
            "pseudo-online cross-validation on the training recordings alone (which also "
            "chooses its pipeline and window length). Writes evaluation.json, curve.png (hits "
            "against false activations as the threshold moves) and traces.png (the decoder's "
            "probabilities around the test cues) to --out."),
        epilog=("Example, on the PhysioNet runs in ../shared/data/eeg/physionet_mi_S001: "
                "yume evaluate --train S001R04.edf --test S001R08.edf"),
    )
    p.add_argument("--train", nargs="+", type=Path, required=True,
                   help="recordings to train and tune on")
    p.add_argument("--test", nargs="+", type=Path, required=True,
                   help="recordings to test on (never used for training or tuning)")
    p.add_argument("--classes", type=_csv, default=["left_hand", "right_hand"],
                   help="movement classes, comma-separated")
    p.add_argument("--rest", default="rest", help="label of the rest periods")
    p.add_argument("--map", dest="label_map", type=_mapping, default=None,
                   help="rename event labels first, e.g. T0=rest,T1=left_hand,T2=right_hand")
    p.add_argument("--window", type=_window, default=(0.5, 2.5),
                   help="cue-locked window after the cue, TMIN:TMAX seconds, for the offline "
                        "figures and the cue-locked decoder (default: 0.5:2.5)")
    p.add_argument("--pipelines", type=_csv, default=None,
                   help="candidate pipelines (default: csp_lda,fbcsp_lda,ts_lr,mdm offline; "
                        "ts_lr,csp_lda,mdm asynchronous)")
    p.add_argument("--async-pipelines", type=_csv, default=None,
                   help="candidates of the asynchronous decoder alone, comma-separated "
                        "(default: --pipelines if given, else rc_ts_lr); an rc_* candidate is "
                        "re-centred online while it is scored, as `yume run` then decodes "
                        "with it")
    p.add_argument("--windows", type=_lengths, default=None,
                   help="window lengths (s) the asynchronous decoder's pseudo-online CV "
                        "chooses between, comma-separated (default: 1,2)")
    p.add_argument("--target-fa", type=float, default=1.0,
                   help="most false activations per minute of rest the operating point may have")
    p.add_argument("--out", type=Path, default=Path("runs/evaluation"),
                   help="folder for evaluation.json and curve.png")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calibration.async_training import AsyncConfig
    from calibration.evaluation import EvaluationConfig, evaluate

    if args.target_fa < 0:
        raise ValueError(f"--target-fa must be zero or positive, got {args.target_fa}.")
    overlap = {p.resolve() for p in args.train} & {p.resolve() for p in args.test}
    if overlap:
        raise ValueError(f"{', '.join(p.name for p in overlap)} is both a training and a test "
                         "recording; test on recordings the decoder never saw.")
    overrides = {k: tuple(v) for k, v in (("pipelines", args.async_pipelines or args.pipelines),
                                          ("windows", args.windows)) if v}
    asy = AsyncConfig(**overrides) if overrides else None
    config = EvaluationConfig(classes=args.classes, rest_label=args.rest,
                              label_map=args.label_map, tmin=args.window[0],
                              tmax=args.window[1], pipelines=args.pipelines,
                              target_fa_per_min=args.target_fa, async_config=asy)
    result = evaluate(args.train, args.test, config, out=args.out,
                      progress=not args.no_progress)
    print(result.table())
    print(f"results: {args.out / 'evaluation.json'}, plots: {args.out / 'curve.png'} (hits "
          f"against false activations), {args.out / 'traces.png'} (probabilities around the "
          "test cues)")
    return 0
