"""Small frozen value types shared by every layer.

Coordinate conventions (SPEC section 1), used everywhere in the project:
    * a point is ``(x, y)`` = (column, row) in pixels of the image it was annotated on, sub-pixel floats,
      origin at the centre of the top-left pixel;
    * pixel arrays are indexed ``[row, col]`` (shape ``(H, W)``);
    * spacing is ``(row_mm, col_mm)``, exactly as DICOM PixelSpacing, so a distance in mm is
      ``hypot(dx * col_mm, dy * row_mm)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Slice:
    """One decoded 2-D MR image with its identity and geometry.

    Attributes:
        pixels: (H, W) float32, rescale slope/intercept applied.
        spacing: (row_mm, col_mm) from PixelSpacing.
        study_uid, series_uid, instance_uid: DICOM UIDs of the image.
        z_index: index of the image in its series sorted by position along the slice normal.
        num_slices: number of images in that sorted series (scouts excluded).
        series_description: SeriesDescription (or ProtocolName) as found, may be empty.
        reason: human-readable account of why this series/image was chosen.
        path: file the pixels came from.
        stack: optional (2k+1, H, W) float32 of the image and its k neighbours on each side, ordered by
            position; the centre channel equals ``pixels``. Series ends are padded by repeating the edge.
    """

    pixels: np.ndarray
    spacing: tuple[float, float]
    study_uid: str
    series_uid: str
    instance_uid: str
    z_index: int
    num_slices: int
    series_description: str = ""
    reason: str = ""
    path: str = ""
    stack: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass(frozen=True)
class Point:
    """One landmark of an annotation or a prediction.

    Attributes:
        identification: landmark name ("L1", "L4-L5", ...).
        kind: schema kind of the landmark ("vertebra" / "disc").
        coord: (x, y) pixels of the annotated image.
        grades: grade labels of its own kind, in file order; empty means "no grade" (ignore for grading).
        z_index: index of the image in its series, as written in the file (may be None).
        score: confidence in [0, 1] (predictions only).
        extras: extra numeric fields of a prediction point, written beside ``score`` in file order (e.g.
            (("landmarkScore", 0.93), ("flipShiftMm", 1.2))); the format lets readers ignore them.
        other_tags: other kind keys found in the tag with their raw values, e.g. (("vertebra", ""),) on a
            disc; kept so that reading then writing is lossless.
    """

    identification: str
    kind: str
    coord: tuple[float, float]
    grades: tuple[str, ...] = ()
    z_index: int | None = None
    score: float | None = None
    other_tags: tuple[tuple[str, str], ...] = ()
    extras: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ImageAnnotation:
    """Points placed on one image (one ``data`` entry of the JSON).

    Attributes:
        points: every point on the image, all annotation blocks together, in file order.
        annotator: annotator of the (first) block.
        pixel_spacing: optional ``pixelSpacing`` (row_mm, col_mm) carried in the JSON.
        blocks: exact block layout as read, ``(annotator, number of points)`` per ``annotation`` block, so that
            writing reproduces it; None means one block by ``annotator`` holding all points.
    """

    series_uid: str
    instance_uid: str
    points: tuple[Point, ...]
    annotator: object = None
    pixel_spacing: tuple[float, float] | None = None
    blocks: tuple[tuple[object, int], ...] | None = None


@dataclass(frozen=True)
class StudyRecord:
    """One study of the competition JSON: annotations (or predictions) on one or more images."""

    study_uid: str
    images: tuple[ImageAnnotation, ...]
    version: str | None = "v0.1"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def points(self) -> tuple[Point, ...]:
        """All points of the study, every image and annotator together."""
        return tuple(p for im in self.images for p in im.points)

    @property
    def primary(self) -> ImageAnnotation | None:
        """The first annotated image (the one training uses); None for an empty record."""
        return self.images[0] if self.images else None
