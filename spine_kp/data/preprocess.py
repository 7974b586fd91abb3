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

Everything here is numpy, so prediction through ONNX Runtime runs without torch: the resize is torch's antialiased
bilinear interpolation (``F.interpolate(..., antialias=True)``, the PIL filter) written out, and only
:func:`prepare_slice` (the training and torch-prediction entry) turns the result into a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from spine_kp.data.normalization import DEFAULT_PERCENTILES, normalize_intensity
from spine_kp.types import Slice

if TYPE_CHECKING:
    import torch

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


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


def _pair(like: Any, values: tuple[float, float]) -> Any:
    """(2,) array of ``values`` matching the type, float dtype and device of ``like`` (ndarray or tensor)."""
    if not isinstance(like, np.ndarray) and hasattr(like, "is_floating_point"):  # a torch tensor
        floating = like if like.is_floating_point() else like.double()
        return floating.new_tensor(values)
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
    if not len(geometry):
        return coords * 1.0  # an empty copy of the same kind
    scale = np.array([(g.scale_x, g.scale_y) for g in geometry])[:, None]  # (N, 1, 2)
    offset = np.array([(g.offset_x, g.offset_y) for g in geometry])[:, None]
    if isinstance(coords, np.ndarray):
        dtype = coords.dtype if np.issubdtype(coords.dtype, np.floating) else np.float64
        return (coords - offset.astype(dtype)) / scale.astype(dtype)
    floating = coords if coords.is_floating_point() else coords.double()  # a torch tensor
    return (floating - floating.new_tensor(offset)) / floating.new_tensor(scale)


def _resize_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of antialiased linear resampling from ``n_in`` to ``n_out`` pixels along one axis (half-pixel centres).

    The triangle filter is stretched by the scale when shrinking (PIL's filter, which ``F.interpolate(...,
    antialias=True)`` implements), and the weights are normalised. Float32 arithmetic, as torch's, so both agree to
    float rounding.

    Returns:
        ``(index (n_out, T) input pixels, weight (n_out, T))``; unused taps have weight 0.
    """
    f = np.float32
    scale = f(n_in) / f(n_out)
    support, inv_scale = (scale, f(1.0) / scale) if scale >= 1.0 else (f(1.0), f(1.0))
    centre = scale * (np.arange(n_out, dtype=f) + f(0.5))
    lo = np.maximum(np.trunc(centre - support + f(0.5)).astype(np.int64), 0)
    hi = np.minimum(np.trunc(centre + support + f(0.5)).astype(np.int64), n_in)
    idx = lo[:, None] + np.arange(int((hi - lo).max()))
    weight = np.maximum(f(1.0) - np.abs((idx.astype(f) - centre[:, None] + f(0.5)) * inv_scale), f(0.0))
    weight = weight * (idx < hi[:, None])
    total = weight.sum(axis=1, keepdims=True, dtype=f)
    weight = np.divide(weight, total, out=np.zeros_like(weight), where=total != 0)
    return np.minimum(idx, n_in - 1), weight


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a (C, H, W) float32 image to (C, H_out, W_out), separable (width, then height).

    Equals ``F.interpolate(image[None], size, mode="bilinear", align_corners=False, antialias=True)[0]`` to float
    rounding.
    """
    out = np.asarray(image, dtype=np.float32)
    if size[1] != out.shape[2]:
        idx, weight = _resize_weights(out.shape[2], int(size[1]))
        out = (out[:, :, idx] * weight).sum(axis=-1, dtype=np.float32)  # (C, H, W_out, T) -> (C, H, W_out)
    if size[0] != out.shape[1]:
        idx, weight = _resize_weights(out.shape[1], int(size[0]))
        out = (out[:, idx, :] * weight[:, :, None]).sum(axis=2, dtype=np.float32)  # (C, H_out, T, W_out)
    return out


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
    img = np.asarray(image, dtype=np.float32)
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
    resized = resize_bilinear(img, (new_h, new_w)) if (new_h, new_w) != (h, w) else img
    fill = float(resized.min()) if pad_value is None else float(pad_value)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    out = np.full((img.shape[0], out_h, out_w), fill, dtype=np.float32)
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
    return out, geom


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


def prepare_image(
    slc: Slice,
    size: tuple[int, int],
    neighbours: int = 0,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    target_spacing: float | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Turn a decoded slice into a network input: channels, normalization, letterbox (numpy).

    Args:
        slc: the decoded slice (with ``stack`` when ``neighbours > 0``).
        size: (H, W) network input size.
        neighbours: k; the input gets 2k+1 channels ordered by slice position, the image in the centre.
        percentiles: intensity clip percentiles.
        target_spacing: mm per input pixel (see :func:`fit_to_size`); None fits the image to ``size``.

    Returns:
        (2k+1, H, W) float32 array and its Geometry (original pixels <-> input pixels, with the spacing).
    """
    channels = normalize_intensity(slice_channels(slc, neighbours), percentiles)
    return fit_to_size(channels, size, spacing=slc.spacing, target_spacing=target_spacing)


def prepare_slice(
    slc: Slice,
    size: tuple[int, int],
    neighbours: int = 0,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    target_spacing: float | None = None,
) -> tuple[torch.Tensor, Geometry]:
    """:func:`prepare_image` as a (2k+1, H, W) float32 tensor (training and the torch predictor)."""
    import torch  # only this entry needs torch: the module stays importable without it (ONNX Runtime prediction)

    image, geom = prepare_image(slc, size, neighbours, percentiles, target_spacing)
    return torch.from_numpy(image), geom
