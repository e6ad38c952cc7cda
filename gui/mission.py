"""The whole mission in one run: calibrate, train, a cued online run, then a navigation task.

What ``make run`` does without a display (and, up to the decoder, with one): a simulated
participant is calibrated faster than real time (a motor-imagery session with rest cues,
generated at once and recorded like a live one), an asynchronous decoder with a learned
no-control state is trained on it in seconds (its operating point chosen pseudo-online), and
then the same simulated person streams EEG over LSL while

1. a **cued online run** shows a target class for a few seconds between rest blocks and scores
   the first command of each cue, false activations per minute of rest and the ITR;
2. a **navigation task** in the sandbox city has the participant intend the moves toward a
   landmark (turn until facing the path, then walk) while the decoder steers.

Each online run is a session folder of :class:`gui.runtime.SessionRuntime` (decisions, ticks,
route, latency, the recording, the report); ``mission.json`` gathers the figures. The default
participant is the *easy* one (a clear imagery signature), so that the route can be completed
and the figures show the loop working; ``participant="realistic"`` is as hard as a person
(about 0.7-0.85 offline for two classes) and shows what that costs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MISSION_CLASSES = ("left_hand", "right_hand", "feet")  # ← → W: enough to reach a landmark


@dataclass
class MissionOptions:
    """What a mission does (every field has a default that runs in about three minutes).

    Parameters
    ----------
    out : Path
        Parent folder; the mission gets a new time-stamped folder inside.
    world : str
        World engine of the online runs (the navigation task needs the sandbox's map).
    resolution : (int, int)
        Frame size.
    seed : int
        Scene seed.
    participant : {"easy", "realistic"}
        The simulated participant's difficulty.
    participant_seed : int
        Who the participant is (calibration and online use the same person).
    classes : tuple of str
        Imagery classes (rest is added for the no-control state).
    calibration_trials : int
        Trials per class in each of the two calibration runs.
    cued_per_class : int
        Cues per class in the cued online run.
    cue_s, rest_s : float
        Cue and rest lengths of the cued run.
    n_landmarks : int
        Landmarks of the navigation course.
    navigation_limit_s : float
        Time limit of the navigation task.
    bundle : Path or None
        Skip calibration and training and use this decoder bundle.
    progress : bool
        Progress bars.
    """

    out: Path = Path("runs")
    world: str = "sandbox"
    resolution: tuple[int, int] = (128, 128)
    seed: int = 0
    participant: str = "easy"
    participant_seed: int = 7
    classes: tuple[str, ...] = MISSION_CLASSES
    calibration_trials: int = 8
    cued_per_class: int = 3
    cue_s: float = 5.0
    rest_s: float = 4.0
    n_landmarks: int = 1
    navigation_limit_s: float = 120.0
    bundle: Path | None = None
    progress: bool = True


@dataclass
class MissionResult:
    """Where the mission wrote its parts, and its figures."""

    folder: Path
    bundle: Path
    cued: Path
    navigation: Path
    figures: dict = field(default_factory=dict)


def participant_config(kind: str):
    """The simulated participant of a mission."""
    from bci.simulated import ParticipantConfig

    if kind == "easy":
        return ParticipantConfig.easy()
    if kind == "realistic":
        return ParticipantConfig()
    raise ValueError(f"Unknown participant {kind!r}; use 'easy' or 'realistic'.")


def participant_source_file(path: Path, opts: MissionOptions) -> Path:
    """A source file (``--source PATH``) for the mission's participant: the window streams the
    same simulated person the decoder was calibrated on."""
    from bci.config import SimulatedSpec, spec_to_dict
    from bci.simulated import EASY_PRESET

    options = dict(EASY_PRESET) if opts.participant == "easy" else {}
    spec = SimulatedSpec(seed=opts.participant_seed, options=options)
    path.write_text(json.dumps({"source": [spec_to_dict(spec)]}, indent=2), encoding="utf-8")
    return path


def calibrate_and_train(folder: Path, opts: MissionOptions) -> tuple[Path, dict]:
    """Two simulated calibration runs (instant) and an asynchronous decoder trained on them."""
    from calibration.async_training import AsyncConfig, train_async
    from calibration.paradigm import MIParadigm
    from calibration.session import run_offline
    from control.bundle import save_bundle

    config = participant_config(opts.participant)
    runs = []
    for k in range(2):  # two runs: the operating point is chosen leave-one-run-out
        paradigm = MIParadigm(classes=("rest", *opts.classes),
                              trials_per_class=opts.calibration_trials, seed=100 + k)
        run_offline(paradigm, folder / f"run-{k + 1}", config, seed=opts.participant_seed)
        runs.append(folder / f"run-{k + 1}")
    # One window length (2 s): trying 1 s too, as `yume train` does, makes `make run` train
    # for a minute longer and the simulated participant's cues are long enough for 2 s.
    result = train_async(runs, AsyncConfig(classes=opts.classes, pipelines=("ts_lr",),
                                           windows=None),
                         progress=opts.progress)
    bundle = save_bundle(result.bundle, folder / "decoder.zip")
    summary = result.summary()
    return bundle, {"pipeline": summary["best"], "operating_point": summary["chosen"],
                    "meets_target": summary["meets_target"],
                    "training_windows": summary["training_windows"]}


def _online(kind: str, folder: Path, opts: MissionOptions, acq, bundle: Path):
    from control.policy import PolicyConfig
    from gui.app import RunOptions, make_engine
    from gui.headless import run_headless
    from gui.steering import Steering, decoder_control
    from gui.tasks.cued import CuedTask
    from gui.tasks.navigation import NavigationTask

    online = decoder_control(bundle, acq, PolicyConfig(mode="discrete"), publish=False)
    steering = Steering(acq, online)
    mapping = online.policy.mapping
    if kind == "cued":
        task = CuedTask(mapping, n_per_class=opts.cued_per_class, cue_s=opts.cue_s,
                        rest_s=opts.rest_s, seed=opts.seed, rest_jitter_s=1.0)
        limit = None
    else:
        task = NavigationTask(mapping=mapping, n_landmarks=opts.n_landmarks,
                              time_limit_s=opts.navigation_limit_s, command_s=1.0)
        limit = opts.navigation_limit_s
    engine, _ = make_engine(RunOptions(world=opts.world, seed=opts.seed,
                                       resolution=opts.resolution))
    try:
        return run_headless(engine, folder, acquisition=acq, steering=steering, task=task,
                            max_seconds=limit, seed=opts.seed, progress=opts.progress,
                            meta={"decoder": str(bundle), "mission": True,
                                  "participant": opts.participant, "control_mode": "discrete"})
    finally:
        engine.close()


def run_mission(opts: MissionOptions | None = None) -> MissionResult:
    """Run the whole mission (see the module docstring) and write ``mission.json``."""
    from bci.simulated import SimulatedParticipant
    from bci.simulated_lsl import PublishedParticipant
    from gui.app import session_folder, start_acquisition

    opts = opts or MissionOptions()
    participant_config(opts.participant)  # a bad name fails before anything is created
    folder = session_folder(opts.out)
    t0 = time.perf_counter()
    figures: dict = {"options": {k: str(v) if isinstance(v, Path) else v
                                 for k, v in asdict(opts).items()}}
    if opts.bundle is None:
        print("1/3 calibrating the simulated participant (faster than real time) and training "
              "a decoder with a no-control state ...", flush=True)
        bundle, figures["training"] = calibrate_and_train(folder / "calibration", opts)
    else:
        bundle = Path(opts.bundle)
    figures["training_seconds"] = round(time.perf_counter() - t0, 1)
    person = SimulatedParticipant(participant_config(opts.participant),
                                  seed=opts.participant_seed)
    acq = start_acquisition(PublishedParticipant(person))  # the same person, live over LSL
    try:
        print("2/3 cued online run: the participant imagines each cued class ...", flush=True)
        cued = _online("cued", folder / "cued", opts, acq, bundle)
        print("3/3 navigation: the participant steers to a landmark of the city ...",
              flush=True)
        nav = _online("navigation", folder / "navigation", opts, acq, bundle)
    finally:
        acq.stop()
    figures["cued"] = cued.summary.get("task", {})
    figures["navigation"] = nav.summary.get("task", {})
    figures["latency"] = {"cued": cued.summary.get("latency"),
                          "navigation": nav.summary.get("latency")}
    figures["wall_seconds"] = round(time.perf_counter() - t0, 1)
    (folder / "mission.json").write_text(json.dumps(figures, indent=2, default=str),
                                         encoding="utf-8")
    return MissionResult(folder, bundle, cued.folder, nav.folder, figures)


def print_mission(result: MissionResult) -> None:
    """What a mission measured, for the terminal (mission.json holds all of it)."""
    from gui.runtime.latency import format_table

    f = result.figures
    print(f"mission: outputs in {result.folder}")
    training = f.get("training")
    if training:
        point = training["operating_point"]
        print(f"  decoder:     {training['pipeline']} with a rest class, trained in "
              f"{f['training_seconds']:.0f} s; operating point threshold {point['threshold']}, "
              f"dwell {point['dwell_s']} s (pseudo-online CV: hits {point['hit_rate']:.0%}, "
              f"{point['fa_per_min']:.2f} false/min)")
    cued = f.get("cued") or {}
    if cued:
        print(f"  cued run:    {cued.get('hits')} of {cued.get('n_cues')} cues answered right, "
              f"{cued.get('wrong')} wrong, {cued.get('misses')} missed; "
              f"{cued.get('fa_per_min', float('nan')):.2f} false activations per minute of rest; "
              f"ITR {cued.get('itr_bits_per_min', 0):.1f} bits/min  -> {result.cued}")
    nav = f.get("navigation") or {}
    if nav:
        state = "completed" if nav.get("completed") else "NOT completed"
        took = nav.get("completion_time_s") or nav.get("elapsed_s") or 0.0
        print(f"  navigation:  {state} in {took:.0f} s; walked {nav.get('walked_m', 0):.1f} m "
              f"against a shortest {nav.get('shortest_m', 0):.1f} m; "
              f"{nav.get('n_commands')} commands, {nav.get('wrong_commands')} wrong, "
              f"{nav.get('collisions')} collisions  -> {result.navigation}")
    lat = (f.get("latency") or {}).get("navigation")
    if lat:
        print("  latency of the navigation run (LSL clock):")
        for line in format_table(lat).splitlines():
            print("    " + line)
    print(f"  reports:     {result.cued / 'report.html'}, {result.navigation / 'report.html'}")
