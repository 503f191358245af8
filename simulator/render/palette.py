"""The wave pictures' colours: simulator.analysis.palette, re-exported. It lives a floor
below render/ so the viewer (view/, render's sibling, which may not import render/)
reads the same definitions; the PNGs, GIFs and view.html share one palette."""
from ..analysis.palette import (BLUE, CURSOR_COLOUR, EMPTY, FLOOR, LS_COLOUR, PURPLE, RED,
                                SIGNED, STRIPE_SPACING, SYNC_COLOUR, TAG_GROUND, TAG_LEAN,
                                TAG_LEVELS,
                                WIDE_BAND, export, from_hex, magnitude_levels, mix,
                                tag_levels, tag_period, to_bytes)

__all__ = ["BLUE", "CURSOR_COLOUR", "EMPTY", "FLOOR", "LS_COLOUR", "PURPLE", "RED", "SIGNED",
           "STRIPE_SPACING", "SYNC_COLOUR", "TAG_GROUND", "TAG_LEAN", "TAG_LEVELS", "WIDE_BAND",
           "export", "from_hex", "magnitude_levels", "mix", "tag_levels", "tag_period", "to_bytes"]
