"""Closed loop over real LSL: simulated participant -> LSL outlet -> LSL inlet -> ring buffer ->
online decoder -> control policy -> actions; scripted intents, rest, a stream that goes away."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pylsl
import pytest

from bci.lsl import LSLInlet
from bci.ringbuffer import RingBuffer
from bci.simulated import IntentScript, ParticipantConfig, ParticipantStream, SimulatedParticipant
from control.actions import IDLE
from control.bundle import load_bundle, save_bundle
from control.online import OnlineControl, OnlineDecoder, ProbabilityOutlet
from control.policy import ControlPolicy, PolicyConfig, PolicyState
from tests.control.ctrl_helpers import MOTOR_MONTAGE, calibrate_participant

SPEED = 10.0  # signal seconds per wall-clock second
LEAD_S, INTENT_S, REST_AFTER_S = 3.0, 5.0, 3.0
INTENTS = ("left_hand", "right_hand", "feet", "right_hand", "feet", "left_hand")
LONG_REST_S = 150.0


@pytest.mark.slow
def test_closed_loop_over_lsl(tmp_path):
    # Plumbing (LSL both ways, stream loss, timing), so the easy preset: its decoder is right
    # nearly always, and a wrong command here means a broken path. How the loop fares on a
    # participant as hard as a person: tests/bci/test_bci_simulated_realism.py.
    cfg = ParticipantConfig.easy(sfreq=160.0, montage=MOTOR_MONTAGE, speed=SPEED)
    part = SimulatedParticipant(cfg, seed=7)
    bundle = calibrate_participant(part)
    # The decoder travels as a bundle file, as it would from calibration to control.
    bundle = load_bundle(save_bundle(bundle, tmp_path / "decoder"))

    steps, t = [], LEAD_S
    onsets = []
    for intent in INTENTS:
        steps += [(t, intent), (t + INTENT_S, "rest")]
        onsets.append((t, intent))
        t += INTENT_S + REST_AFTER_S
    rest_from, end_s = t + 3.0, t + LONG_REST_S  # skip the window still covering the last cue
    name = f"ctrl-loop-{uuid.uuid4().hex[:8]}"
    stream = ParticipantStream(part, name=name, script=IntentScript(steps))
    stream.start()
    try:
        inlet = LSLInlet(source_id=stream.source_id, timeout=10.0, dejitter=False,
                         stall_timeout=0.5)
        inlet.start()
        decoder = OnlineDecoder.from_bundle(bundle)
        decoder.bind(inlet.info)
        policy = ControlPolicy(bundle.classes, bundle.actions, PolicyConfig(), step_s=0.25)
        outlet = ProbabilityOutlet(bundle.classes, name=f"{name}-proba")
        loop = OnlineControl(decoder, policy, outlet=outlet, time_scale=SPEED, stale_s=0.5)
        proba_inlet = pylsl.StreamInlet(
            pylsl.resolve_byprop("source_id", outlet.source_id, timeout=5.0)[0])
        proba_inlet.open_stream(timeout=5.0)
        buf = RingBuffer(inlet.info.n_channels, int(10 * cfg.sfreq))
        # Signal time (s since the participant started) of an LSL timestamp.
        t0 = part._t0

        def signal_time(lsl_t: float) -> float:
            return (lsl_t - t0) * SPEED

        commands, idle_moves = [], 0
        deadline = time.monotonic() + end_s / SPEED + 15.0
        while time.monotonic() < deadline:
            data, ts = inlet.poll()
            if data.shape[1]:
                buf.push(data, ts)
            for out in loop.step(buf, pylsl.local_clock()):
                if out.command is not None:  # policy time = LSL time x SPEED
                    commands.append((signal_time(out.timestamp / SPEED), out.candidate))
                if out.state is not PolicyState.FIRED and out.action != IDLE:
                    idle_moves += 1
            if buf.n_written and signal_time(buf.latest(1)[1][0]) >= end_s:
                break
            time.sleep(0.01)
        assert buf.n_written and signal_time(buf.latest(1)[1][0]) >= end_s, "stream too slow"
        assert idle_moves == 0  # the world only moves when a command fired

        # Scripted intents: first command after each onset, before the next onset.
        results = []
        for onset, intent in onsets:
            window = [c for c in commands if onset <= c[0] < onset + INTENT_S + REST_AFTER_S]
            first = window[0] if window else None
            results.append({"intent": intent, "first": first[1] if first else None,
                            "time_to_command_s": round(first[0] - onset, 2) if first else None,
                            "n_commands": len(window),
                            "n_wrong": sum(c[1] != intent for c in window)})
        accuracy = np.mean([r["first"] == r["intent"] for r in results])
        latencies = [r["time_to_command_s"] for r in results if r["first"] == r["intent"]]
        n_all = sum(r["n_commands"] for r in results)
        precision = 1 - sum(r["n_wrong"] for r in results) / max(n_all, 1)
        false = [c for c in commands if rest_from <= c[0] < end_s]
        false_per_min = len(false) / ((end_s - rest_from) / 60.0)
        figures = {"intents": len(INTENTS), "first_command_accuracy": float(accuracy),
                   "command_precision": float(precision),
                   "median_time_to_command_s": float(np.median(latencies)) if latencies else None,
                   "max_time_to_command_s": float(np.max(latencies)) if latencies else None,
                   "rest_minutes": round((end_s - rest_from) / 60.0, 2),
                   "false_activations_per_min": round(false_per_min, 2), "speed": SPEED,
                   "decoded_windows": decoder.n_decoded, "skipped_windows": decoder.n_skipped,
                   "results": results}
        print("closed-loop figures:", json.dumps(figures, ensure_ascii=False))
        (tmp_path / "closed_loop.json").write_text(json.dumps(figures, ensure_ascii=False))
        assert accuracy >= 5 / 6
        assert figures["median_time_to_command_s"] < 4.0
        assert false_per_min < 1.0
        assert decoder.n_skipped == 0

        # Probabilities were published on LSL, one channel per class.
        samples, _ = proba_inlet.pull_chunk(timeout=1.0, max_samples=100000)
        assert len(samples) > 100 and len(samples[0]) == len(bundle.classes)
        np.testing.assert_allclose(np.sum(samples, axis=1), 1.0, atol=1e-4)

        # The stream goes away mid-control: the policy goes idle and says why; no crash.
        part.set_intent("left_hand")
        stream.stop()
        lost_at = time.monotonic()
        reasons = []
        while time.monotonic() - lost_at < 2.0:
            data, ts = inlet.poll()
            if data.shape[1]:
                buf.push(data, ts)
            reasons += [o.reason for o in loop.step(buf, pylsl.local_clock()) if o.reason]
            time.sleep(0.02)
        assert policy.state is PolicyState.IDLE and policy.action == IDLE
        assert reasons and "stream may be lost" in reasons[-1]
        inlet.stop()
    finally:
        stream.stop()
