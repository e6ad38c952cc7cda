"""The Qt-free session runtime: one loop for the window, headless runs, replay and tasks.

A session folder holds::

    session.jsonl   every event on the LSL clock (run_started, intent, command, action, gaps,
                    quality, task_event, run_finished)
    decisions.tsv   one row per decoded window: t, tick, p_<class>..., state, candidate,
                    command, intended
    ticks.tsv       one row per control tick: tick, now, n_written (the buffer's sample count),
                    action, origin, error -- what replay needs to reproduce the decisions
    route.tsv       one row per generated frame: frame, step, t, world_time, x, y, z, yaw_deg,
                    pitch_deg, action, collided
    latency.tsv     one row per command with the LSL time of each stage (see
                    :mod:`gui.runtime.latency`); latency.json the table; latency.png the plot
    task.json/.tsv  the online task's figures and per-trial rows (when a task ran)
    summary.json    the run's summary
    recording/      the source's samples and events (a :class:`bci.recording.Recorder` session,
                    with its BIDS copy)
    report.html     the session report (:mod:`gui.session_report`)
"""

from gui.runtime.latency import LatencyTracer
from gui.runtime.session import SessionRuntime, TracedWorld

__all__ = ["LatencyTracer", "SessionRuntime", "TracedWorld"]
