"""QualityWatch on real EEG (PhysioNet S001) streamed into a ring buffer: lights, then the
artifact index, as log entries."""

from __future__ import annotations

import mne
import numpy as np

from bci.quality import ArtifactMonitor
from bci.quality_watch import QualityWatch
from bci.ringbuffer import RingBuffer
from bci.stream import StreamInfo


def test_quality_watch_logs_lights_and_artifact_index_on_real_eeg(physionet_dir):
    raw = mne.io.read_raw_edf(physionet_dir / "S001R03.edf", preload=True, verbose="error")
    raw.rename_channels(lambda name: name.strip("."))  # EDF labels are padded: "C3.."
    raw.pick(["C3", "Cz", "C4", "Fp1", "Fp2", "Pz", "O1", "O2"])
    x = raw.get_data() * 1e6
    sfreq = raw.info["sfreq"]
    x[1, int(20 * sfreq):] = 3.0  # Cz comes off after 20 s: flat from then on
    info = StreamInfo("S001", sfreq, tuple(raw.ch_names) + ("counter",),
                      ("eeg",) * 8 + ("misc",))
    buffer = RingBuffer(9, int(30 * sfreq))
    watch = QualityWatch(buffer, info, calibration_s=10.0,
                         artifacts=ArtifactMonitor(window_s=1.0))
    entries, step = [], int(0.5 * sfreq)
    for a in range(0, int(40 * sfreq), step):
        block = np.vstack([x[:, a:a + step], np.arange(a, a + step)[None]])
        buffer.push(block.astype(np.float32), a / sfreq + np.arange(step) / sfreq)
        entries += watch.poll(a / sfreq)
        if watch._fitting is not None:
            watch._fitting.join()  # in the window the fit runs beside the event loop
    kinds = [k for k, _ in entries]
    quality = [f for k, f in entries if k == "signal_quality"]
    assert watch.names == list(raw.ch_names)  # the counter channel is not judged
    assert quality and all(c["status"] != "bad" for c in quality[0]["channels"])
    assert {c["name"]: c["status"] for c in quality[-1]["channels"]}["Cz"] == "bad"
    assert "Cz flat" in quality[-1]["summary"]
    scores = [f["z"] for k, f in entries if k == "artifact_index"]
    assert kinds.index("artifact_index") > 0 and len(scores) >= 15  # once a second after fit
    assert all(np.isfinite(scores))
