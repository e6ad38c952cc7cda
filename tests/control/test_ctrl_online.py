"""Online decoder on a live ring buffer: each window once, channel picks, units, filters, LSL."""

from __future__ import annotations

import uuid

import numpy as np
import pylsl
import pytest
from scipy.signal import butter, sosfilt
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from bci.ringbuffer import RingBuffer
from bci.stream import StreamInfo
from control.actions import parse_action
from control.online import DecoderError, OnlineControl, OnlineDecoder, ProbabilityOutlet
from control.policy import ControlPolicy, PolicyConfig, PolicyState

SFREQ = 100.0
CH = ("C3", "Cz", "C4")


def log_var(X):
    return np.log(np.var(X, axis=-1) + 1e-12)


def fitted_pipeline(seed: int = 0):
    """Three classes told apart by which channel carries more power."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, name in enumerate(("rest", "left_hand", "right_hand")):
        for _ in range(30):
            gains = np.ones(3)
            if k:
                gains[k - 1 if k == 1 else 2] = 3.0
            X.append(rng.standard_normal((3, 100)) * gains[:, None])
            y.append(name)
    pipe = make_pipeline(FunctionTransformer(log_var), LinearDiscriminantAnalysis())
    return pipe.fit(np.array(X), np.array(y))


@pytest.fixture(scope="module")
def pipe():
    return fitted_pipeline()


def make_decoder(pipe, **kw):
    kw = {"window_s": 1.0, "step_s": 0.1, **kw}
    return OnlineDecoder(pipe, pipe.classes_, CH, SFREQ, **kw)


def stream_info(ch=CH, units="uV", sfreq=SFREQ):
    return StreamInfo("test", sfreq, tuple(ch), units=units, source_id=uuid.uuid4().hex)


def test_each_window_decoded_once_with_irregular_polls(pipe):
    rng = np.random.default_rng(1)
    dec = make_decoder(pipe)
    info = stream_info()
    dec.bind(info)
    buf = RingBuffer(3, 500)
    data = rng.standard_normal((3, 1000))
    times = 50.0 + np.arange(1000) / SFREQ
    got, pos = [], 0
    for n in rng.integers(0, 37, size=200):
        buf.push(data[:, pos:pos + n], times[pos:pos + n])
        pos += n
        got += dec.update(buf)
        if pos >= 1000:
            break
    ends = [w.end_count for w in got]
    # Starts with the first full window, then every 10 samples, never twice, none missing.
    assert ends[0] >= 100 and np.all(np.diff(ends) == 10)
    assert ends[-1] > 990 - 10
    assert dec.n_decoded == len(got) and dec.n_skipped == 0
    # Timestamp = last sample of the window; probabilities = offline decode of the same window.
    for w in got[::17]:
        assert w.timestamp == times[w.end_count - 1]
        offline = pipe.predict_proba(data[None, :, w.end_count - 100:w.end_count])[0]
        np.testing.assert_allclose(w.probabilities, offline, rtol=1e-3, atol=1e-6)
    assert dec.update(buf) == []  # nothing new, nothing decoded


def test_channel_picks_and_units(pipe):
    rng = np.random.default_rng(2)
    # The stream has extra channels, a different order and lower-case names, in volts.
    info = stream_info(ch=("EOG", "c4", "C3", "X", "CZ"), units="V")
    dec = make_decoder(pipe)
    dec.bind(info)
    assert list(dec.picks) == [2, 4, 1] and dec.scale == pytest.approx(1e6)
    window_uv = rng.standard_normal((3, 100)) * np.array([[1.0], [1.0], [3.0]])
    stream = np.zeros((5, 100))
    stream[[2, 4, 1]] = window_uv * 1e-6
    buf = RingBuffer(5, 200)
    buf.push(stream, np.arange(100) / SFREQ)
    (w,) = dec.update(buf)
    np.testing.assert_allclose(w.probabilities, pipe.predict_proba(window_uv[None])[0], rtol=1e-4)


def test_bind_errors(pipe):
    dec = make_decoder(pipe)
    with pytest.raises(DecoderError, match="lacks channels.*C4"):
        dec.bind(stream_info(ch=("C3", "Cz")))
    with pytest.raises(DecoderError, match="250.0 Hz"):
        dec.bind(stream_info(sfreq=250.0))
    with pytest.raises(DecoderError, match="unit"):
        dec.bind(stream_info(units="furlongs"))
    with pytest.raises(DecoderError, match="Bind"):
        make_decoder(pipe).update(RingBuffer(3, 10))
    with pytest.raises(DecoderError, match="predict_proba"):
        OnlineDecoder(object(), ["a", "b"], CH, SFREQ, 1.0, 0.1)


def test_falling_behind_skips_overwritten_windows(pipe):
    dec = make_decoder(pipe)
    dec.bind(stream_info())
    buf = RingBuffer(3, 150)
    rng = np.random.default_rng(3)
    buf.push(rng.standard_normal((3, 100)), np.arange(100) / SFREQ)
    assert len(dec.update(buf)) == 1
    buf.push(rng.standard_normal((3, 300)), np.arange(100, 400) / SFREQ)
    got = dec.update(buf)
    # Only windows that still lie wholly in the 150-sample buffer are decoded.
    assert [w.end_count for w in got] == [350, 360, 370, 380, 390, 400]
    assert dec.n_skipped == 24


def test_causal_filter_is_stateful_across_chunks(pipe):
    rng = np.random.default_rng(4)
    data = rng.standard_normal((3, 400))
    dec = make_decoder(pipe, causal_band=(8.0, 30.0))
    dec.bind(stream_info())
    buf = RingBuffer(3, 1000)
    got = []
    for a in range(0, 400, 7):
        buf.push(data[:, a:a + 7], np.arange(a, min(a + 7, 400)) / SFREQ)
        got += dec.update(buf)
    sos = butter(4, [8.0, 30.0], btype="bandpass", fs=SFREQ, output="sos")
    from scipy.signal import sosfilt_zi
    zi = sosfilt_zi(sos)[:, None, :] * data[None, :, :1]
    whole, _ = sosfilt(sos, data, axis=-1, zi=zi)
    last = got[-1]
    expected = pipe.predict_proba(whole[None, :, last.end_count - 100:last.end_count])[0]
    np.testing.assert_allclose(last.probabilities, expected, rtol=1e-4)


def test_probability_outlet_over_lsl():
    name = f"proba-{uuid.uuid4().hex[:8]}"
    out = ProbabilityOutlet(("rest", "left_hand"), name=name)
    found = pylsl.resolve_byprop("source_id", out.source_id, timeout=5.0)
    assert found
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=5.0)
    info = inlet.info(timeout=5.0)
    ch = info.desc().child("channels").child("channel")
    assert ch.child_value("label") == "rest"
    from control.online import DecodedWindow
    t0 = pylsl.local_clock()
    out.push_windows([DecodedWindow(t0 + i * 0.1, np.array([0.25, 0.75]), i) for i in range(5)])
    samples, stamps = [], []
    for _ in range(50):
        s, t = inlet.pull_chunk(timeout=0.1)
        samples += s
        stamps += t
        if len(samples) >= 5:
            break
    assert len(samples) == 5
    np.testing.assert_allclose(samples[0], [0.25, 0.75])
    np.testing.assert_allclose(stamps, t0 + 0.1 * np.arange(5), atol=1e-6)


class Exploding:
    classes_ = np.array(["rest", "left_hand", "right_hand"])

    def predict_proba(self, X):
        raise FloatingPointError("singular covariance")


def test_online_control_failure_paths(pipe):
    classes = tuple(pipe.classes_)
    mapping = {"rest": "·", "left_hand": "←", "right_hand": "→"}
    policy = ControlPolicy(classes, mapping, PolicyConfig(stale_s=0.5))
    dec = OnlineDecoder(Exploding(), classes, CH, SFREQ, 1.0, 0.1)
    dec.bind(stream_info())
    loop = OnlineControl(dec, policy)
    buf = RingBuffer(3, 200)
    buf.push(np.zeros((3, 150)), np.arange(150) / SFREQ)
    (out,) = loop.step(buf, now=2.0)
    assert out.state is PolicyState.IDLE and "singular covariance" in out.reason
    (out,) = loop.step(buf, now=2.1, source_error="The amplifier was unplugged.")
    assert "unplugged" in out.reason
    with pytest.raises(DecoderError, match="classes"):
        OnlineControl(make_decoder(pipe), ControlPolicy(("a", "b"), {"a": "·", "b": "W"}))


def test_decoder_from_bundle_and_bundle_errors(pipe):
    from control.bundle import BundleError, DecoderBundle

    bundle = DecoderBundle(pipeline=pipe, ch_names=CH, sfreq=SFREQ,
                           classes=tuple(pipe.classes_), units="uV", window_s=1.0, step_s=0.2)
    dec = OnlineDecoder.from_bundle(bundle)
    assert (dec.window_n, dec.step_n) == (100, 20)
    dec.bind(stream_info(ch=("C4", "CZ.", "C3..")))  # BCI2000-style names, another order
    assert list(dec.picks) == [2, 1, 0]
    with pytest.raises(BundleError, match="lacks 1 of the decoder's 3 channels"):
        OnlineDecoder.from_bundle(bundle).bind(stream_info(ch=("C3", "Cz")))
    # The bundle's classes go to the policy; a mapping that misses one is refused up front.
    from control.mapping import MappingError

    with pytest.raises(MappingError, match="right_hand"):
        ControlPolicy(bundle.classes, {"rest": "·", "left_hand": "←"})


def test_lost_stream_makes_policy_idle_with_reason(pipe):
    classes = tuple(pipe.classes_)
    policy = ControlPolicy(classes, {"rest": "·", "left_hand": "←", "right_hand": "→"},
                           PolicyConfig(mode="direct", smoothing="none", dwell_s=0.0))
    dec = make_decoder(pipe)
    dec.bind(stream_info())
    loop = OnlineControl(dec, policy, stale_s=0.5, clock="samples")
    rng = np.random.default_rng(5)
    buf = RingBuffer(3, 1000)
    strong_left = rng.standard_normal((3, 300)) * np.array([[3.0], [1.0], [1.0]])
    for a in range(0, 300, 10):
        buf.push(strong_left[:, a:a + 10], np.arange(a, a + 10) / SFREQ)
        loop.step(buf, now=(a + 10) / SFREQ)
    assert policy.action == parse_action("←")  # moving
    # No more samples: within stale_s (of `now`) the world stops, and the reason is reported.
    outs = loop.step(buf, now=3.2) + loop.step(buf, now=3.6)
    assert outs and outs[-1].state is PolicyState.IDLE and "stream may be lost" in outs[-1].reason
    assert loop.step(buf, now=4.0) == []  # reported once
    # Samples again: control resumes and the reason clears.
    buf.push(strong_left[:, :10], np.arange(300, 310) / SFREQ)
    outs = loop.step(buf, now=4.1)
    assert outs and outs[-1].reason == ""
