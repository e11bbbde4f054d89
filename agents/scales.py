"""The emotional-intensity scale, defined once for every layer.

The seeker's intensity (what the affect judges estimate, what the envs observe and reward)
lies on ESConv's 1-5 scale: 1 = mild, 5 = intense.  Personas start at an integer level of
the scale; judges return floats inside it.  Everything that clips, checks or normalises an
intensity imports these constants (``esc_env.spaces`` re-exports them).
"""

from __future__ import annotations

__all__ = ["INTENSITY_LOW", "INTENSITY_HIGH", "INTENSITY_NEUTRAL", "INTENSITY_SPAN"]

#: the lowest intensity (mild)
INTENSITY_LOW: float = 1.0
#: the highest intensity (intense)
INTENSITY_HIGH: float = 5.0
#: the middle of the scale, used where a judge has no usable answer
INTENSITY_NEUTRAL: float = (INTENSITY_LOW + INTENSITY_HIGH) / 2.0
#: the width of the scale (4)
INTENSITY_SPAN: float = INTENSITY_HIGH - INTENSITY_LOW
