"""Camera-motion vocabulary, online decoders, control policy and peripherals."""

from control.actions import (
    IDLE,
    ROTATIONS,
    TRANSLATIONS,
    Action,
    ActionError,
    action_prompt,
    format_action,
    parse_action,
    parse_prompt,
    vocabulary,
)
from control.keyboard import KeyboardMap
from control.motion import (
    CameraState,
    MotionStep,
    apply_action,
    quantize_motion,
    quantize_trajectory,
    segment_constant,
)

__all__ = [
    "IDLE", "ROTATIONS", "TRANSLATIONS", "Action", "ActionError", "CameraState", "KeyboardMap",
    "MotionStep", "action_prompt", "apply_action", "format_action", "parse_action",
    "parse_prompt", "quantize_motion", "quantize_trajectory", "segment_constant", "vocabulary",
]
