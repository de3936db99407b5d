"""How a rendering treats the photo's colours and its blacks: hue shift and black lift.

Both compare a result with the dark photo it was made from, pixel by pixel; the images are
``(H, W, 3)`` sRGB arrays in [0, 1], as written (8-bit levels).

* ``hue_shift``: the chroma-weighted CIELAB hue shift from input to output, in degrees. Both are
  converted to CIELAB (sRGB, D65, scikit-image's ``rgb2lab``); per pixel the hue angle
  ``h = atan2(b*, a*)`` of the output is compared with the input's, the difference wrapped to
  [0°, 180°]; the mean of these differences is weighted by the output's chroma
  ``C* = hypot(a*, b*)``, so the colours one sees count most. A hue is only defined where there is
  colour: pixels whose chroma is below ``NEUTRAL_CHROMA`` in the input or in the output (greys,
  blacks, and the near-black levels where 8-bit rounding alone swings the hue) are left out. A pure
  change of exposure keeps the hue (CIELAB's a* and b* scale together), so what this measures is a
  cast or a per-channel curve. ``None`` when no pixel has colour in both.
* ``black_lift``: the mean output luma (Rec. 601: 0.299 R' + 0.587 G' + 0.114 B', on the encoded
  values, as the package's brightness) over the pixels whose input luma is below ``BLACK_LUMA``:
  how far the places where the photo held nothing (a night sky, a black background) are lifted.
  ``None`` when the photo has no such pixel; ``black_pixels`` gives their count, so a set of photos
  is summarised by the pixel-weighted mean (every such pixel of every photo counts once).
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2lab

NEUTRAL_CHROMA = 2.0
BLACK_LUMA = 0.01
LUMA = np.array([0.299, 0.587, 0.114])

DEFINITIONS = {
    "hue_shift": (
        "chroma-weighted CIELAB hue shift from input to output, degrees: per pixel |h_out - h_in| wrapped to "
        f"[0, 180], h = atan2(b*, a*) (sRGB, D65), mean weighted by the output's chroma C*; pixels with C* < "
        f"{NEUTRAL_CHROMA:g} in the input or the output are left out; per photo, then the mean over photos"
    ),
    "black_lift": (
        "mean output luma (0.299 R' + 0.587 G' + 0.114 B') over the pixels whose input luma is below "
        f"{BLACK_LUMA:g}; over a set, every such pixel of every photo counts once (photos without one add nothing)"
    ),
    "black_lift_per_photo": "black_lift per photo, then the mean over the photos that have such pixels",
}


def luma(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` Rec. 601 luma of ``image`` ``(H, W, 3)``."""
    return image @ LUMA


def hue_shift(before: np.ndarray, after: np.ndarray) -> float | None:
    """Chroma-weighted CIELAB hue shift in degrees from ``before`` to ``after`` (module docstring)."""
    lab_before, lab_after = rgb2lab(np.clip(before, 0, 1)), rgb2lab(np.clip(after, 0, 1))
    chroma_before = np.hypot(lab_before[..., 1], lab_before[..., 2])
    chroma_after = np.hypot(lab_after[..., 1], lab_after[..., 2])
    coloured = (chroma_before >= NEUTRAL_CHROMA) & (chroma_after >= NEUTRAL_CHROMA)
    if not coloured.any():
        return None
    hue_before = np.arctan2(lab_before[..., 2], lab_before[..., 1])[coloured]
    hue_after = np.arctan2(lab_after[..., 2], lab_after[..., 1])[coloured]
    difference = np.degrees(np.abs(np.angle(np.exp(1j * (hue_after - hue_before)))))
    weights = chroma_after[coloured]
    return float(np.sum(difference * weights) / np.sum(weights))


def black_lift(before: np.ndarray, after: np.ndarray) -> tuple[float | None, int]:
    """``(mean output luma where the input's luma < BLACK_LUMA, how many such pixels)``."""
    black = luma(before) < BLACK_LUMA
    count = int(black.sum())
    return (float(luma(after)[black].mean()) if count else None), count
