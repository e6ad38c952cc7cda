"""Sub-commands of ``yume``; each module registers one with ``add_parser``."""
