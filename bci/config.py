"""Source configuration: files (TOML or JSON) and command-line strings describing where the
samples come from, read into spec dataclasses and turned into :class:`~bci.stream.Source`
objects by :func:`make_source`.

A configuration file lists one table per source::

    [[source]]
    kind = "brainflow"
    board = "cyton"
    serial_port = "/dev/ttyUSB0"

    [[source]]
    kind = "lsl"
    name = "EMG"

    [[source]]
    kind = "file"
    path = "runs/S001R04.edf"
    speed = 2.0

    [[source]]
    kind = "simulated"
    seed = 3
    snr = 0.5

The same in JSON is ``{"source": [{"kind": "brainflow", ...}, ...]}``. Unknown keys and kinds
are refused with an error naming them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bci.brainflow_source import BoardSpec, BrainFlowSource
from bci.stream import Source

__all__ = ["BrainFlowSpec", "ConfigError", "FileSpec", "LSLSpec", "SimulatedSpec", "SourceSpec",
           "load_sources", "make_source", "parse_source", "parse_sources", "spec_to_dict"]


class ConfigError(ValueError):
    """A source configuration is wrong; the message names the key and what to write."""


@dataclass(frozen=True)
class BrainFlowSpec:
    """A BrainFlow board (``kind = "brainflow"``); keys are those of :class:`BoardSpec` plus
    ``channels`` (``"eeg"`` or ``"all"``)."""

    board: BoardSpec = field(default_factory=BoardSpec)
    channels: str = "eeg"
    kind: str = field(default="brainflow", init=False)


@dataclass(frozen=True)
class LSLSpec:
    """An LSL stream on the network (``kind = "lsl"``), found by name, type or source id."""

    name: str = ""
    stream_type: str = ""
    source_id: str = ""
    timeout: float = 5.0
    kind: str = field(default="lsl", init=False)


@dataclass(frozen=True)
class FileSpec:
    """A recording replayed as a stream (``kind = "file"``); see
    :class:`bci.playback.FilePlayback`."""

    path: str
    speed: float = 1.0
    loop: bool = False
    events: str | None = None
    stream: str | None = None
    kind: str = field(default="file", init=False)


@dataclass(frozen=True)
class SimulatedSpec:
    """The simulated participant (``kind = "simulated"``): ``seed`` plus any field of
    :class:`bci.simulated.ParticipantConfig` (``sfreq``, ``snr``, ``montage``...)."""

    seed: int = 0
    options: dict = field(default_factory=dict)
    kind: str = field(default="simulated", init=False)


SourceSpec = BrainFlowSpec | LSLSpec | FileSpec | SimulatedSpec

# LSL keys as users write them; "type" is the LSL name for the content type.
_LSL_ALIASES = {"type": "stream_type"}


def _field_types(cls) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def _check_value(where: str, key: str, value, default, required: bool = False):
    """Coerce ``value`` to the type of ``default``; raise a ConfigError naming the key."""
    if default is None or default is dataclasses.MISSING:
        if required and (value is None or value == ""):
            raise ConfigError(f"{where}: '{key}' must not be empty.")
        return value if value is None else (str(value) if not isinstance(value, list | tuple)
                                            else tuple(value))
    expected = type(default)
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # board ids and ports written as numbers
    elif expected is tuple:
        if isinstance(value, list | tuple):
            return tuple(value)
    else:
        return value
    raise ConfigError(
        f"{where}: '{key}' must be a {expected.__name__}, got {value!r}."
    )


def _unknown(where: str, key: str, allowed) -> ConfigError:
    return ConfigError(
        f"{where}: unknown key '{key}'; allowed keys are {', '.join(sorted(allowed))}."
    )


def _board_fields() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(BoardSpec)}


def _participant_fields() -> dict[str, Any]:
    from bci.simulated import ParticipantConfig

    return {f.name: f.default for f in dataclasses.fields(ParticipantConfig)}


def spec_from_dict(entry: dict, where: str = "source") -> SourceSpec:
    """One spec from a table such as ``{"kind": "lsl", "name": "EEG"}``.

    Raises
    ------
    ConfigError
        For an unknown kind or key, a missing required key or a value of the wrong type.
    """
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table of keys, got {entry!r}.")
    entry = dict(entry)
    kind = entry.pop("kind", None)
    kinds = ("brainflow", "lsl", "file", "simulated")
    if kind not in kinds:
        raise ConfigError(
            f"{where}: unknown or missing 'kind' {kind!r}; use one of {', '.join(kinds)}."
        )
    where = f"{where} (kind {kind!r})"
    if kind == "brainflow":
        allowed = {**_board_fields(), "channels": "eeg"}
        out = {}
        for key, value in entry.items():
            if key not in allowed:
                raise _unknown(where, key, allowed)
            default = allowed[key]
            if key in ("board", "master_board"):
                if not isinstance(value, int | str) or isinstance(value, bool):
                    raise ConfigError(f"{where}: '{key}' must be a board name or id, "
                                      f"got {value!r}.")
                out[key] = value
            else:
                out[key] = _check_value(where, key, value, default)
        channels = out.pop("channels", "eeg")
        if channels not in ("eeg", "all"):
            raise ConfigError(f"{where}: 'channels' must be 'eeg' or 'all', got {channels!r}.")
        return BrainFlowSpec(board=BoardSpec(**out), channels=channels)
    if kind == "lsl":
        entry = {_LSL_ALIASES.get(k, k): v for k, v in entry.items()}
        allowed = _field_types(LSLSpec)
        out = {}
        for key, value in entry.items():
            if key not in allowed:
                raise _unknown(where, key, {*allowed, "type"} - {"stream_type"})
            out[key] = _check_value(where, key, value, allowed[key])
        if not (out.get("name") or out.get("stream_type") or out.get("source_id")):
            raise ConfigError(f"{where}: give at least one of 'name', 'type' or 'source_id' "
                              "to find the stream.")
        return LSLSpec(**out)
    if kind == "file":
        allowed = _field_types(FileSpec)
        out = {}
        for key, value in entry.items():
            if key not in allowed:
                raise _unknown(where, key, allowed)
            out[key] = _check_value(where, key, value, allowed[key], required=key == "path")
        if not out.get("path"):
            raise ConfigError(f"{where}: 'path' is required (the recording to replay).")
        return FileSpec(**out)
    # simulated
    allowed = _participant_fields()
    seed = _check_value(where, "seed", entry.pop("seed", 0), 0)
    options = {}
    for key, value in entry.items():
        if key not in allowed:
            raise _unknown(where, key, {*allowed, "seed"})
        default = allowed[key]
        if isinstance(value, list):
            value = tuple(value)
        elif default is not None and not isinstance(default, str | tuple):
            value = _check_value(where, key, value, default)
        options[key] = value
    return SimulatedSpec(seed=seed, options=options)


def parse_sources(doc: dict, where: str = "configuration") -> list[SourceSpec]:
    """Specs from a parsed configuration document ``{"source": [ {...}, ... ]}``."""
    if not isinstance(doc, dict):
        raise ConfigError(f"The {where} must be a table with a 'source' list.")
    for key in doc:
        if key != "source":
            raise ConfigError(
                f"The {where} has an unknown top-level key '{key}'; it may only hold "
                "[[source]] tables."
            )
    entries = doc.get("source", [])
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"The {where} lists no source; add at least one [[source]] table.")
    return [spec_from_dict(e, f"{where}: source {i + 1}") for i, e in enumerate(entries)]


def load_sources(path: str | os.PathLike) -> list[SourceSpec]:
    """Read a TOML (``.toml``) or JSON (``.json``) source configuration file.

    Raises
    ------
    ConfigError
        If the file cannot be parsed or describes a source wrongly.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"The configuration file {path} does not exist.")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
        else:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                          f"{err}.") from err
    return parse_sources(doc, where=str(path))


def parse_source(text: str) -> SourceSpec:
    """A spec from a command-line string.

    ``simulated``, ``synthetic`` (BrainFlow's synthetic board), ``brainflow:BOARD`` or
    ``brainflow:BOARD:SERIAL_PORT``, ``lsl:NAME``, ``file:PATH``; a path ending in ``.toml``
    or ``.json`` is read with :func:`load_sources` and must hold one source.
    """
    text = str(text).strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind == "simulated" and not rest:
        return SimulatedSpec()
    if kind == "synthetic" and not rest:
        return BrainFlowSpec(board=BoardSpec(board="synthetic"))
    if kind == "brainflow" and rest:
        board, _, port = rest.partition(":")
        return BrainFlowSpec(board=BoardSpec(board=board, serial_port=port))
    if kind == "lsl" and rest:
        return LSLSpec(name=rest)
    if kind == "file" and rest:
        return FileSpec(path=rest)
    if text.lower().endswith((".toml", ".json")):
        specs = load_sources(text)
        if len(specs) != 1:
            raise ConfigError(f"{text} describes {len(specs)} sources; this needs exactly one.")
        return specs[0]
    raise ConfigError(
        f"Unknown source {text!r}; use simulated, synthetic, brainflow:BOARD[:PORT], lsl:NAME, "
        "file:PATH or a .toml/.json configuration file."
    )


def spec_to_dict(spec: SourceSpec) -> dict:
    """The configuration-file table of ``spec`` (what ``config.json`` records)."""
    if isinstance(spec, BrainFlowSpec):
        board = {k: v for k, v in dataclasses.asdict(spec.board).items()
                 if v != _board_fields()[k] or k == "board"}
        return {"kind": "brainflow", **board, "channels": spec.channels}
    if isinstance(spec, SimulatedSpec):
        return {"kind": "simulated", "seed": spec.seed,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in spec.options.items()}}
    d = dataclasses.asdict(spec)
    kind = d.pop("kind")
    return {"kind": kind, **d}


def make_source(spec: SourceSpec) -> Source:
    """The :class:`~bci.stream.Source` a spec describes (not started).

    Raises
    ------
    AcquisitionError
        If the board id does not exist, the file cannot be replayed, LSL support is missing...
        (opening a device happens at ``start()``, which raises AcquisitionError too).
    ConfigError
        If the simulated participant's options are invalid.
    """
    if isinstance(spec, BrainFlowSpec):
        return BrainFlowSource(spec.board, channels=spec.channels)
    if isinstance(spec, FileSpec):
        from bci.playback import FilePlayback

        return FilePlayback(spec.path, speed=spec.speed, loop=spec.loop,
                            events=spec.events, stream=spec.stream)
    if isinstance(spec, SimulatedSpec):
        from bci.simulated import ParticipantConfig, SimulatedParticipant

        try:
            cfg = ParticipantConfig(**spec.options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"Invalid simulated participant settings: {err}") from err
        return SimulatedParticipant(cfg, seed=spec.seed)
    if isinstance(spec, LSLSpec):
        return _make_lsl_source(spec)
    raise ConfigError(f"Cannot build a source from {spec!r}; pass a spec from bci.config.")


def _make_lsl_source(spec: LSLSpec) -> Source:
    from bci.lsl_inlet import LSLInlet

    # Resolves the stream now: a stream that is not on the network fails here, clearly.
    return LSLInlet(name=spec.name or None, type=spec.stream_type or None,
                    source_id=spec.source_id or None, timeout=spec.timeout)
