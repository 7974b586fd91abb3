"""Cache of prepared network inputs (normalized, letterboxed slices), in memory and optionally on disk.

Decoding DICOM (often JPEG 2000) is the slowest step of a sample, so it is done once per slice: the memory
cache lives in each process (each DataLoader worker fills its own; keep workers persistent), the disk cache
(``.npz`` files, written atomically) is shared by workers and by later runs.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from spine_kp.data.preprocess import Geometry
from spine_kp.io.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when preprocessing changes, so stale disk entries are not reused


class SliceCache:
    """Maps a key string to (image (C, H, W) float32, Geometry).

    Args:
        memory: keep entries in this process's memory.
        directory: also store entries as ``<sha1>.npz`` files here (created if missing); None for memory only.
    """

    def __init__(self, memory: bool = True, directory: str | Path | None = None) -> None:
        self.memory = memory
        self.directory = Path(directory) if directory is not None else None
        self._entries: dict[str, tuple[np.ndarray, Geometry]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        digest = hashlib.sha1(f"v{CACHE_VERSION}|{key}".encode()).hexdigest()
        return self.directory / f"{digest}.npz"

    def get(self, key: str) -> tuple[np.ndarray, Geometry] | None:
        """The cached entry, or None (a corrupt disk entry is ignored and will be rewritten)."""
        hit = self._entries.get(key)
        if hit is not None or self.directory is None:
            return hit
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:  # a hash collision would silently return another slice
                    return None
                image = z["image"].astype(np.float32)
                g = z["geometry"]
                geom = Geometry(
                    scale_x=float(g[0]),
                    scale_y=float(g[1]),
                    offset_x=float(g[2]),
                    offset_y=float(g[3]),
                    orig_shape=(int(g[4]), int(g[5])),
                    spacing=None if np.isnan(g[6]) else (float(g[6]), float(g[7])),
                    input_shape=(int(g[8]), int(g[9])),
                )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache entry ignored (%s)", path, exc)
            return None
        if self.memory:
            self._entries[key] = (image, geom)
        return image, geom

    def put(self, key: str, image: np.ndarray, geom: Geometry) -> None:
        """Store an entry in memory and, when a directory is set, on disk."""
        if self.memory:
            self._entries[key] = (image, geom)
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        scale_offset = (geom.scale_x, geom.scale_y, geom.offset_x, geom.offset_y)
        spacing = geom.spacing if geom.spacing is not None else (np.nan, np.nan)
        in_shape = geom.input_shape if geom.input_shape is not None else image.shape[-2:]
        g = np.array([*scale_offset, *geom.orig_shape, *spacing, *in_shape], np.float64)
        buf = io.BytesIO()
        np.savez(buf, key=np.array(key), image=image.astype(np.float32), geometry=g)
        atomic_write_bytes(self._path(key), buf.getvalue())
