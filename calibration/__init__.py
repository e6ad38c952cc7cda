"""Calibration paradigms, cue timing, decoder training, cross-validation and reports."""
