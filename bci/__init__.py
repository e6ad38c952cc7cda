"""Acquisition: BrainFlow boards, LSL streams, playback, the simulated participant, ring buffers,
clocks and recording. This package imports nothing else of the project."""

from bci.acquisition import Acquisition
from bci.brainflow_source import BoardSpec, BrainFlowSource, board_names, resolve_board_id
from bci.ringbuffer import RingBuffer
from bci.stream import AcquisitionError, Source, SourceState, StreamInfo

__all__ = [
    "Acquisition", "AcquisitionError", "BoardSpec", "BrainFlowSource", "RingBuffer", "Source",
    "SourceState", "StreamInfo", "board_names", "resolve_board_id",
]
