"""Lab Streaming Layer in one import: inlets (sources), outlets and stream discovery.

See :mod:`bci.lsl_inlet` and :mod:`bci.lsl_outlet` for the details.
"""

from bci.lsl_inlet import (
    LSLInlet,
    MarkerInlet,
    StreamQuery,
    find_streams,
    open_inlet,
    open_inlets,
    resolve_stream,
    stream_info_from_lsl,
)
from bci.lsl_outlet import EEGOutlet, MarkerOutlet, ValueOutlet, unique_source_id

__all__ = [
    "EEGOutlet", "LSLInlet", "MarkerInlet", "MarkerOutlet", "StreamQuery", "ValueOutlet",
    "find_streams", "open_inlet", "open_inlets", "resolve_stream", "stream_info_from_lsl",
    "unique_source_id",
]
