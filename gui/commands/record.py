"""``yume record``: record a source headless to a new BIDS session folder."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "record", help="record a source to a BIDS session folder (headless)",
        description=(
            "Record a source for --duration seconds into a new session folder under --out "
            "(raw EEG in BIDS via mne-bids, events table, JSON-lines log, config.json); "
            "the folder is printed when the recording starts and again at its end. Samples "
            "are written as they arrive: a killed recording is rebuilt with "
            "`yume record --recover FOLDER`."
        ),
    )
    p.add_argument("--source", default="simulated",
                   help="simulated | synthetic | brainflow:BOARD[:PORT] | lsl:NAME | file:PATH "
                        "| a .toml/.json source configuration")
    p.add_argument("--config", help="source configuration file (TOML or JSON); its first "
                                    "[[source]] is recorded (overrides --source)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to record")
    p.add_argument("--out", default="runs", help="folder that receives the session folder")
    p.add_argument("--subject", default="01", help="BIDS subject label")
    p.add_argument("--session", default="01", help="BIDS session label")
    p.add_argument("--task", default="bci", help="BIDS task label")
    p.add_argument("--run", type=int, default=None, help="BIDS run number")
    p.add_argument("--line-freq", type=float, default=None, help="mains frequency (50 or 60)")
    p.add_argument("--format", choices=("BrainVision", "EDF"), default="BrainVision",
                   help="format of the BIDS copy")
    p.add_argument("--speed", type=float, default=None,
                   help="playback speed for file sources (default: 1 = real time)")
    p.add_argument("--markers", action="append", default=[], metavar="NAME",
                   help="also record the events of this LSL marker stream (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--recover", metavar="FOLDER",
                   help="rebuild the BIDS dataset of a killed recording and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from bci.config import FileSpec, load_sources, make_source, parse_source, spec_to_dict
    from bci.recording import new_session_dir, record, recover_session

    if args.recover:
        bids_path = recover_session(args.recover)
        print(bids_path.fpath)
        return 0
    if args.duration <= 0:
        raise ValueError(f"--duration must be positive, got {args.duration}.")
    spec = load_sources(args.config)[0] if args.config else parse_source(args.source)
    if args.speed is not None:
        if not isinstance(spec, FileSpec):
            raise ValueError("--speed applies to file sources only; leave it out.")
        spec = dataclasses.replace(spec, speed=args.speed)
    source = make_source(spec)
    markers = []
    if args.markers:
        from bci.lsl_inlet import MarkerInlet

        markers = [MarkerInlet(name=name) for name in args.markers]
    folder = new_session_dir(args.out, args.subject, args.session, args.task)
    config = {"source": [spec_to_dict(spec)], "markers": args.markers,
              "duration": args.duration, "command": "yume record"}
    # Said before the first sample and flushed through a pipe: after a kill -9 (or a crash)
    # this line is all that tells where the recording to recover is.
    print(f"recording to {folder} (if it is killed: yume record --recover {folder})",
          flush=True)
    record(source, folder, args.duration, progress=not args.no_progress, config=config,
           markers=markers,
           subject=args.subject, session=args.session, task=args.task, run=args.run,
           line_freq=args.line_freq, bids_format=args.format)
    print(folder)
    return 0
