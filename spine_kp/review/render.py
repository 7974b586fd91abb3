"""Slices as PNG for the review page: the predictor's own decoding, a window/level, 8-bit grey at full resolution.

Decoded slices are kept in a small least-recently-used cache (:class:`SliceCache`), so opening a study (its JSON asks
for the default window, its image for the pixels) decodes the DICOM file once, and stepping back to a slice is free.
PNG is written with zlib level 1: a 512 x 512 slice encodes in a few milliseconds, where the default level takes
several times longer for a file only slightly smaller.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from spine_kp.io.dicom import StudyIndex, load_series_slice

CACHE_SLICES = 64


@dataclass(frozen=True)
class Decoded:
    """One decoded slice and its default window.

    Attributes:
        pixels: (H, W) float32, rescale applied (as the predictor sees it).
        window: (center, width) from the 1st and 99th percentile of the slice.
    """

    pixels: np.ndarray
    window: tuple[float, float]


def default_window(pixels: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 1st to the 99th percentile of ``pixels`` (H, W); width at least 1."""
    low, high = (float(v) for v in np.percentile(pixels, [1.0, 99.0]))
    return (low + high) / 2.0, max(high - low, 1.0)


def to_png(pixels: np.ndarray, center: float, width: float) -> bytes:
    """``pixels`` (H, W) mapped linearly from [center - width / 2, center + width / 2] to 0-255, as an 8-bit grey PNG.

    Args:
        pixels: (H, W) real values.
        center: window center, in the units of ``pixels``.
        width: window width, > 0.
    """
    from PIL import Image

    scaled = (pixels.astype(np.float32) - np.float32(center - width / 2.0)) * np.float32(255.0 / width)
    grey = np.clip(scaled, 0.0, 255.0, out=scaled).astype(np.uint8)  # (H, W)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class SliceCache:
    """Decoded slices by (study, series, index), the ``maxsize`` most recently used; safe across threads."""

    def __init__(self, maxsize: int = CACHE_SLICES) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str, int], Decoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, study: StudyIndex, series_uid: str, index: int) -> Decoded:
        """The decoded slice ``index`` of the series (see :func:`spine_kp.io.dicom.load_series_slice`).

        Raises:
            IngestError: the slice cannot be decoded or does not exist.
        """
        key = (study.study_uid, series_uid, index)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # decoded outside the lock: two requests for different slices decode in parallel
        pixels = load_series_slice(study, series_uid, index).pixels
        item = Decoded(pixels, default_window(pixels))
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return item
