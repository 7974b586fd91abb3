"""Image preprocessing shared by training and prediction: intensity normalization and fitting to the network size.

Nothing here knows about annotations, so the predictor applies exactly the same steps to an unseen study.

Resizing is a **letterbox**: one scale for the whole image chosen so that it fits the input size, then centred
padding. With a ``target_spacing`` (mm per input pixel) the scale is chosen in millimetres instead, so a vertebra
covers the same number of input pixels whatever the field of view (nnU-Net's target spacing): a tight 220 mm
field of view is padded, a 300 mm one fills the input, and one too large to fit at that spacing is shrunk to fit.
Because the resized size is rounded to whole pixels, the realised scales along x and y may differ by less than one
pixel over the image; :class:`Geometry` stores both, so the mapping stays exact.

Coordinate frame (see :mod:`spine_kp.types`): a point is ``(x, y)`` = (column, row) in pixels, origin at the
centre of the top-left pixel. Resizing uses half-pixel centres (``align_corners=False``), so a point maps as
``x_input = x_orig * scale_x + offset_x`` where the offset includes the half-pixel shift and the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from spine_kp.data.intensity import DEFAULT_PERCENTILES, normalize_intensity
from spine_kp.types import Slice

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Geometry:
    """How an original image was placed in the network input: ``input = original * scale + offset`` per axis.

    Attributes:
        scale_x, scale_y: input pixels per original pixel along x (columns) and y (rows).
        offset_x, offset_y: input position of the original point (0, 0) (half-pixel shift plus padding).
        orig_shape: (H, W) of the original image.
        spacing: (row_mm, col_mm) of the original image, or None when unknown.
        input_shape: (H, W) of the network input the image was fitted to.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    orig_shape: tuple[int, int]
    spacing: tuple[float, float] | None = None
    input_shape: tuple[int, int] | None = None

    def to_input(self, xy: ArrayT) -> ArrayT:
        """Map (..., 2) points (x, y) from original pixels to input pixels (numpy or torch, same type back)."""
        scale, offset = _pair(xy, (self.scale_x, self.scale_y)), _pair(xy, (self.offset_x, self.offset_y))
        return xy * scale + offset

    def to_original(self, xy: ArrayT) -> ArrayT:
        """Map (..., 2) points (x, y) from input pixels back to original pixels (the exact inverse of to_input)."""
        scale, offset = _pair(xy, (self.scale_x, self.scale_y)), _pair(xy, (self.offset_x, self.offset_y))
        return (xy - offset) / scale

    @property
    def input_spacing(self) -> tuple[float, float]:
        """(row_mm, col_mm) of one input pixel."""
        if self.spacing is None:
            raise ValueError("Geometry has no pixel spacing; build it with fit_to_size(..., spacing=...)")
        return (self.spacing[0] / self.scale_y, self.spacing[1] / self.scale_x)

    def to(self, *args: object, **kwargs: object) -> Geometry:
        """Device moves are a no-op (no tensors inside).

        Lightning moves a batch by calling ``.to`` on every object that has it; without this method it would
        rebuild each dataclass field by field, which a frozen dataclass refuses ("A frozen dataclass was passed
        to apply_to_collection").
        """
        return self

    def to_mm(self, xy_input: ArrayT) -> ArrayT:
        """Map (..., 2) input-pixel points to millimetres (x_mm, y_mm) from the original top-left pixel centre."""
        if self.spacing is None:
            raise ValueError("Geometry has no pixel spacing; build it with fit_to_size(..., spacing=...)")
        return self.to_original(xy_input) * _pair(xy_input, (self.spacing[1], self.spacing[0]))


def _pair(like: np.ndarray | torch.Tensor, values: tuple[float, float]) -> np.ndarray | torch.Tensor:
    """(2,) array of ``values`` matching the type, float dtype and device of ``like``."""
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float64
        return torch.tensor(values, dtype=dtype, device=like.device)
    arr = np.asarray(like)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return np.asarray(values, dtype=dtype)


def to_original(coords: ArrayT, geometry: Geometry | Sequence[Geometry]) -> ArrayT:
    """Map (N, K, 2) input-pixel points back to original pixels, one Geometry per item (or one for all).

    Args:
        coords: (N, K, 2) points (x, y) in input pixels, numpy or torch.
        geometry: a Geometry shared by all N items, or a sequence of N (e.g. ``batch["geometry"]``).

    Returns:
        (N, K, 2) points in original pixels, same type as ``coords``.
    """
    if isinstance(geometry, Geometry):
        return geometry.to_original(coords)
    if len(geometry) != coords.shape[0]:
        raise ValueError(f"to_original: {coords.shape[0]} coordinate sets but {len(geometry)} geometries")
    rows = [g.to_original(coords[i]) for i, g in enumerate(geometry)]
    if isinstance(coords, torch.Tensor):
        return torch.stack(rows) if rows else coords.clone()
    return np.stack(rows) if rows else np.array(coords, copy=True)


def fit_to_size(
    image: np.ndarray | torch.Tensor,
    size: tuple[int, int],
    spacing: tuple[float, float] | None = None,
    pad_value: float | None = None,
    target_spacing: float | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Letterbox an image into ``size``: aspect-preserving bilinear resize (antialiased), centred padding.

    Args:
        image: (C, H, W) image.
        size: (H_out, W_out) network input size.
        spacing: (row_mm, col_mm) of the image, stored in the Geometry for mm conversions.
        pad_value: value of the padding; default the image minimum (MR background is dark).
        target_spacing: mm per input pixel along the rows; the image is scaled to it (never beyond what fits
            ``size``). None scales the image to fit ``size``. Needs ``spacing``.

    Returns:
        (C, H_out, W_out) float32 image and the Geometry mapping original pixels to input pixels.
    """
    img = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    if img.ndim != 3:
        raise ValueError(f"fit_to_size expects (C, H, W), got shape {tuple(img.shape)}")
    h, w = int(img.shape[1]), int(img.shape[2])
    out_h, out_w = int(size[0]), int(size[1])
    s = min(out_h / h, out_w / w)
    if target_spacing is not None:
        if spacing is None:
            raise ValueError("fit_to_size: target_spacing needs the image's pixel spacing")
        s = min(s, float(spacing[0]) / float(target_spacing))
    new_h, new_w = min(out_h, max(1, round(h * s))), min(out_w, max(1, round(w * s)))
    if (new_h, new_w) != (h, w):
        resized = F.interpolate(img[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)[0]
    else:
        resized = img
    fill = float(resized.min()) if pad_value is None else float(pad_value)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    out = torch.full((img.shape[0], out_h, out_w), fill, dtype=torch.float32)
    out[:, top : top + new_h, left : left + new_w] = resized
    # realised scales (after rounding); align_corners=False maps pixel centres as x' = (x + 0.5) * s - 0.5
    sx, sy = new_w / w, new_h / h
    geom = Geometry(
        scale_x=sx,
        scale_y=sy,
        offset_x=left + 0.5 * sx - 0.5,
        offset_y=top + 0.5 * sy - 0.5,
        orig_shape=(h, w),
        spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        input_shape=(out_h, out_w),
    )
    return out.numpy(), geom


def slice_channels(slc: Slice, neighbours: int) -> np.ndarray:
    """The (2k+1, H, W) channels of a slice: the image and ``neighbours`` slices on each side, by position.

    Raises:
        ValueError: when neighbours are asked for but the slice was loaded without (enough of) them.
    """
    if neighbours <= 0:
        return np.asarray(slc.pixels, dtype=np.float32)[None]
    want = 2 * neighbours + 1
    stack = slc.stack
    if stack is None or stack.shape[0] < want:
        have = 1 if stack is None else stack.shape[0]
        raise ValueError(
            f"study {slc.study_uid} instance {slc.instance_uid}: {want} channels asked for but the slice was loaded "
            f"with {have}; load it with neighbours={neighbours}"
        )
    centre = stack.shape[0] // 2
    return np.asarray(stack[centre - neighbours : centre + neighbours + 1], dtype=np.float32)


def prepare_slice(
    slc: Slice,
    size: tuple[int, int],
    neighbours: int = 0,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    target_spacing: float | None = None,
) -> tuple[torch.Tensor, Geometry]:
    """Turn a decoded slice into a network input: channels, normalization, letterbox.

    Args:
        slc: the decoded slice (with ``stack`` when ``neighbours > 0``).
        size: (H, W) network input size.
        neighbours: k; the input gets 2k+1 channels ordered by slice position, the image in the centre.
        percentiles: intensity clip percentiles.
        target_spacing: mm per input pixel (see :func:`fit_to_size`); None fits the image to ``size``.

    Returns:
        (2k+1, H, W) float32 tensor and its Geometry (original pixels <-> input pixels, with the spacing).
    """
    channels = normalize_intensity(slice_channels(slc, neighbours), percentiles)
    image, geom = fit_to_size(channels, size, spacing=slc.spacing, target_spacing=target_spacing)
    return torch.from_numpy(image), geom
