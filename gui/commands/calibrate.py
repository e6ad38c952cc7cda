"""``yume calibrate``: run a motor-imagery or SSVEP calibration session and record it."""

from __future__ import annotations

import argparse
from pathlib import Path


def _timing(text: str) -> dict:
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip() if key.strip().endswith("_s") else key.strip() + "_s"] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not KEY=SECONDS; write e.g. fixation=2,trial=4,iti_min=1.5") from None
    return out


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="run a calibration session (motor imagery or SSVEP) and record it",
        description=(
            "Show cues (fixation, arrows or SSVEP targets), stamp each onset on the LSL clock, "
            "publish it as an LSL marker (and a BrainFlow marker on BrainFlow boards) and record "
            "the EEG with the cues. --headless runs without a window; with the simulated "
            "participant (the default source) it follows the cues, faster than real time with "
            "--speed, or all at once with --offline. Train a decoder on the result with "
            "`yume train SESSION_DIR`."),
    )
    p.add_argument("--paradigm", choices=("mi", "ssvep"), default="mi", help="paradigm")
    p.add_argument("--config", type=Path, default=None,
                   help="paradigm file (JSON or TOML); the options below override it")
    p.add_argument("--classes", default=None,
                   help="MI classes, comma-separated (default: left_hand,right_hand,feet)")
    p.add_argument("--freqs", default=None, help="SSVEP target frequencies in Hz, e.g. 8,10,12,15")
    p.add_argument("--trials", type=int, default=None, help="trials per class")
    p.add_argument("--runs", type=int, default=None, help="runs, with breaks between them")
    p.add_argument("--seed", type=int, default=None, help="seed of the trial order")
    p.add_argument("--timing", type=_timing, default=None,
                   help="timing overrides, e.g. fixation=2,cue=1.25,trial=4,iti_min=1.5,"
                        "iti_max=2.5,break=15")
    p.add_argument("--board", default=None,
                   help="record from this BrainFlow board (name or id) instead of the simulated "
                        "participant")
    p.add_argument("--serial-port", default="", help="BrainFlow serial port")
    p.add_argument("--lsl", default=None, metavar="NAME",
                   help="record from the LSL EEG stream of this name (e.g. an amplifier's)")
    p.add_argument("--headless", action="store_true", help="no window")
    p.add_argument("--offline", action="store_true",
                   help="simulated participant only: generate the whole session at once")
    p.add_argument("--speed", type=float, default=None,
                   help="simulated participant: signal time per wall-clock second (default: 10 "
                        "headless, 1 with a window)")
    p.add_argument("--snr", type=float, default=1.0, help="simulated participant SNR")
    p.add_argument("--participant-seed", type=int, default=0, help="simulated participant seed")
    p.add_argument("--sfreq", type=float, default=250.0, help="simulated participant rate (Hz)")
    p.add_argument("--montage", default="standard_32",
                   help="simulated participant montage: standard_32 or standard_64")
    p.add_argument("--out", type=Path, default=Path("recordings"),
                   help="folder that receives the session folder")
    p.add_argument("--subject", default="01", help="BIDS subject label")
    p.add_argument("--session", default="01", help="BIDS session label")
    p.add_argument("--no-markers", action="store_true", help="do not publish LSL markers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from bci.recording import new_session_dir
    from calibration.paradigm import build_paradigm, schedule, session_length
    from calibration.session import CalibrationSession, run_headless, run_offline

    paradigm = build_paradigm(args.paradigm, args.config, classes=args.classes, freqs=args.freqs,
                              trials=args.trials, runs=args.runs, seed=args.seed,
                              timing=args.timing)
    folder = new_session_dir(args.out, args.subject, args.session, task=paradigm.kind)
    length = session_length(schedule(paradigm))
    rec_kwargs = {"subject": args.subject, "session": args.session}
    if args.board is not None and args.lsl is not None:
        raise ValueError("Give either --board or --lsl, not both.")
    if args.lsl is not None:
        if args.offline:
            raise ValueError("--offline needs the simulated participant; drop --lsl.")
        from bci.lsl import LSLInlet

        source = LSLInlet(name=args.lsl)
        speed = 1.0
        what = f"LSL stream {args.lsl!r}"
    elif args.board is None:
        from bci.simulated import ParticipantConfig, SimulatedParticipant

        speed = args.speed if args.speed else (10.0 if args.headless else 1.0)
        cfg = ParticipantConfig(sfreq=args.sfreq, montage=args.montage, snr=args.snr,
                                speed=speed)
        source = SimulatedParticipant(cfg, seed=args.participant_seed)
        what = f"simulated participant (seed {args.participant_seed}, x{speed:g})"
    else:
        if args.offline:
            raise ValueError("--offline needs the simulated participant; drop --board.")
        from bci.brainflow_source import BoardSpec, BrainFlowSource

        source = BrainFlowSource(BoardSpec(board=args.board, serial_port=args.serial_port))
        speed = 1.0
        what = source.info.name
    print(f"{paradigm.kind} calibration: {len(paradigm.labels)} classes x "
          f"{paradigm.trials_per_class} trials, {length:.0f} s of signal from {what}")
    if args.offline:
        result = run_offline(paradigm, folder, source.config, seed=args.participant_seed,
                             **rec_kwargs)
    elif args.headless:
        session = CalibrationSession(paradigm, source, folder, markers=not args.no_markers,
                                     **rec_kwargs)
        result = run_headless(session)
    else:
        result = _run_window(paradigm, source, folder, not args.no_markers, rec_kwargs)
    n_cues = sum(1 for e in result.events if e[2] in paradigm.labels)
    print(f"recorded {result.n_samples} samples and {n_cues} cues to {result.session_dir}"
          + (" (aborted)" if result.aborted else ""))
    if len(result.lateness_s):
        late = np.abs(result.lateness_s) * 1000
        print(f"cue stamps vs plan: median {np.median(late):.2f} ms, "
              f"p99 {np.percentile(late, 99):.2f} ms (wall clock)")
    print(f"next: yume train {result.session_dir}")
    return 1 if result.aborted else 0


def _run_window(paradigm, source, folder, markers, rec_kwargs):
    from PyQt6.QtWidgets import QApplication

    from calibration.session import CalibrationSession
    from gui.cue_screen import CueRunner, CueScreen

    app = QApplication.instance() or QApplication([])
    screen = CueScreen(paradigm)
    screen.resize(900, 700)
    session = CalibrationSession(paradigm, source, folder, markers=markers, **rec_kwargs)
    runner = CueRunner(session, screen)
    runner.finished.connect(lambda _res: app.quit())
    screen.show()
    runner.start()
    app.exec()
    if runner.result is None:  # window closed before the end
        runner.abort()
    return runner.result
