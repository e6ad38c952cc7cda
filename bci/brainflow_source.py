"""BrainFlow boards as sources: one :class:`BoardSpec` per device, start/stop/poll."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowError, BrainFlowInputParams
from pylsl import local_clock

from bci.quality import board_impedance, board_reports_impedance
from bci.stream import AcquisitionError, Source, SourceState, StreamInfo

logger = logging.getLogger(__name__)


# Short names for boards whose BrainFlow name is not "<NAME>_BOARD".
_BOARD_ALIASES = {"PLAYBACK": "PLAYBACK_FILE_BOARD", "PLAYBACK_FILE": "PLAYBACK_FILE_BOARD",
                  "STREAMING": "STREAMING_BOARD"}


def resolve_board_id(board: int | str) -> int:
    """Board id from an id (``-1``) or a name (``"synthetic"``, ``"SYNTHETIC_BOARD"``, ``"cyton"``).

    Raises
    ------
    AcquisitionError
        If no BrainFlow board has that id or name.
    """
    ids = {b.value: b.name for b in BoardIds}
    numeric = isinstance(board, str) and board.strip().lstrip("-").isdigit()
    if isinstance(board, int | np.integer) or numeric:
        bid = int(board)
        if bid in ids:
            return bid
        raise AcquisitionError(
            f"BrainFlow has no board with id {bid}; use an id such as -1 (synthetic) or a name "
            "such as 'synthetic' or 'cyton' (see `yume boards`)."
        )
    key = str(board).strip().upper().replace("-", "_").replace(" ", "_")
    key = _BOARD_ALIASES.get(key, key)
    for cand in (key, key + "_BOARD"):
        if cand in BoardIds.__members__:
            return BoardIds[cand].value
    raise AcquisitionError(
        f"BrainFlow has no board named {board!r}; use a name such as 'synthetic', 'cyton' or "
        "'ganglion', or a numeric board id (see `yume boards`)."
    )


def board_names() -> dict[int, str]:
    """All BrainFlow board ids with their names."""
    return {b.value: b.name for b in BoardIds}


@dataclass(frozen=True)
class BoardSpec:
    """Everything needed to open one BrainFlow board (BrainFlow's ``BrainFlowInputParams``).

    Parameters
    ----------
    board : int or str
        Board id or name (``"synthetic"``, ``"cyton"``, ``-1``...).
    serial_port, mac_address, ip_address, serial_number, file, other_info : str
        Connection parameters; which ones a board needs is listed in BrainFlow's documentation.
    ip_port, ip_protocol, timeout : int
        Network parameters and discovery timeout (s).
    master_board : int or str or None
        For the playback and streaming boards: the board the file or stream came from.
    """

    board: int | str = "synthetic"
    serial_port: str = ""
    mac_address: str = ""
    ip_address: str = ""
    ip_port: int = 0
    ip_protocol: int = 0
    serial_number: str = ""
    file: str = ""
    other_info: str = ""
    timeout: int = 0
    master_board: int | str | None = None

    @property
    def board_id(self) -> int:
        return resolve_board_id(self.board)

    def input_params(self) -> BrainFlowInputParams:
        params = BrainFlowInputParams()
        for key, value in asdict(self).items():
            if key in ("board",):
                continue
            if key == "master_board":
                if value is not None:
                    params.master_board = resolve_board_id(value)
                continue
            setattr(params, key, value)
        return params


class BrainFlowSource(Source):
    """Acquire the EEG channels of a BrainFlow board, timestamps on the LSL clock.

    Parameters
    ----------
    spec : BoardSpec
        Which board and how to reach it.
    channels : {"eeg", "all"}
        ``"eeg"`` keeps the board's EEG rows; ``"all"`` adds EMG/EOG/ECG rows where the board
        lists them.
    """

    def __init__(self, spec: BoardSpec = BoardSpec(), channels: str = "eeg") -> None:
        self.spec = spec
        self.board_id = spec.board_id  # fails early, with a clear message, on a bad id
        descr_id = self.board_id
        if self.board_id == BoardIds.PLAYBACK_FILE_BOARD.value:
            self._check_playback_file()
        if spec.master_board is not None:
            descr_id = resolve_board_id(spec.master_board)
        BoardShim.disable_board_logger()
        descr = BoardShim.get_board_descr(descr_id)
        rows = list(descr.get("eeg_channels", []))
        names = list(descr.get("eeg_names", "").split(",")) if descr.get("eeg_names") else []
        names = names if len(names) == len(rows) else [f"EEG{i + 1}" for i in range(len(rows))]
        types = ["eeg"] * len(rows)
        if channels == "all":
            for key, typ in (("emg_channels", "emg"), ("eog_channels", "eog"),
                             ("ecg_channels", "ecg")):
                for i, r in enumerate(descr.get(key, [])):
                    if r not in rows:
                        rows.append(r)
                        names.append(f"{typ.upper()}{i + 1}")
                        types.append(typ)
        self._rows = rows
        self._ts_row = descr["timestamp_channel"]
        self._board: BoardShim | None = None
        self._reports_impedance = board_reports_impedance(self.board_id)
        self._latest: np.ndarray | None = None
        self._offset = 0.0
        self.info = StreamInfo(
            name=f"BrainFlow {descr.get('name', self.board_id)}",
            sfreq=float(descr["sampling_rate"]),
            ch_names=tuple(names),
            ch_types=tuple(types),
            units="uV",
            source_id=f"brainflow-{self.board_id}-{spec.serial_number or spec.serial_port}",
            # BrainFlow names the board, not its maker; the BIDS sidecar says which board.
            extras={"model": f"{descr.get('name', self.board_id)} (BrainFlow board "
                             f"{self.board_id})"},
        )

    def start(self) -> None:
        if self.board_id == BoardIds.PLAYBACK_FILE_BOARD.value:
            self._check_playback_file()
        board = BoardShim(self.board_id, self.spec.input_params())
        try:
            board.prepare_session()
            board.start_stream(450_000)
        except BrainFlowError as err:
            try:
                board.release_session()
            except BrainFlowError:
                pass
            self.state = SourceState.FAILED
            hint = ""
            if self.spec.serial_port:
                hint = (f" Check that {self.spec.serial_port} exists, the amplifier is plugged in "
                        "and you may open it (e.g. membership of the 'dialout' group).")
            if self.board_id == BoardIds.PLAYBACK_FILE_BOARD.value:
                hint = (" BrainFlow playback reads only files written by BrainFlow "
                        "(DataFilter.write_file) with the master board's row layout; play other "
                        "formats with bci.playback.FilePlayback.")
            raise AcquisitionError(
                f"Could not open {self.info.name}: {err}.{hint}"
            ) from err
        # BrainFlow stamps with the Unix clock; everything in the app runs on the LSL clock.
        self._offset = time.time() - local_clock()
        self._board = board
        self.state = SourceState.STREAMING
        logger.info("streaming from %s at %.0f Hz", self.info.name, self.info.sfreq)

    def _check_playback_file(self) -> None:
        # BrainFlow's own message for these cases is "unable to prepare streaming session".
        if self.spec.master_board is None:
            raise AcquisitionError(
                "The playback board needs master_board, the board the file was recorded "
                "with (e.g. master_board='synthetic' or 'cyton')."
            )
        if not self.spec.file or not os.path.isfile(self.spec.file):
            raise AcquisitionError(
                f"The playback file {self.spec.file!r} does not exist; BrainFlow playback "
                "reads files written by BrainFlow (DataFilter.write_file); play EDF, BDF, FIF, "
                "BrainVision or XDF files with bci.playback.FilePlayback."
            )
        # BrainFlow plays anything and just yields no samples for a foreign file: check that
        # the first line holds one tab-separated number per row of the master board.
        rows = BoardShim.get_num_rows(resolve_board_id(self.spec.master_board))
        with open(self.spec.file, "rb") as f:
            first = f.readline(1 << 16)
        try:
            ok = len([float(x) for x in first.decode("ascii").split("\t")]) == rows
        except (UnicodeDecodeError, ValueError):
            ok = False
        if not ok:
            raise AcquisitionError(
                f"{self.spec.file} is not a BrainFlow file for master board "
                f"{self.spec.master_board!r} (expected {rows} tab-separated numbers per line); "
                "BrainFlow playback reads only files written by DataFilter.write_file with that "
                "board's rows: play EDF, BDF, FIF, BrainVision or XDF with "
                "bci.playback.FilePlayback."
            )

    def poll(self) -> tuple[np.ndarray, np.ndarray]:
        if self._board is None:
            raise AcquisitionError(f"{self.info.name} is not started; call start() first.")
        try:
            raw = self._board.get_board_data()
        except BrainFlowError as err:
            self.state = SourceState.FAILED
            raise AcquisitionError(f"Lost {self.info.name}: {err}") from err
        if self._reports_impedance and raw.shape[1]:
            self._latest = raw  # the resistance rows travel with the samples
        return raw[self._rows].astype(np.float32), raw[self._ts_row] - self._offset

    def impedance(self) -> Mapping[str, float] | None:
        """Electrode impedances (kΩ) from the latest samples, where the board reports them.

        None for boards without resistance channels (Cyton, most others) and before the first
        samples; see :func:`bci.quality.board_impedance` for which boards do.
        """
        if not self._reports_impedance or self._latest is None:
            return None
        return board_impedance(self.board_id, self._latest)

    def insert_marker(self, value: float) -> None:
        """Write a numeric marker into the board's marker row (BrainFlow's own event channel)."""
        if self._board is not None:
            self._board.insert_marker(float(value))

    def stop(self) -> None:
        board, self._board = self._board, None
        if board is not None:
            try:
                board.stop_stream()
            finally:
                board.release_session()
        self.state = SourceState.STOPPED
