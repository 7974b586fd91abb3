"""Target encoding / prediction decoding (one codec class so training and inference never drift)."""

from spine_kp.codec.heatmap import HeatmapCodec, cells_to_pixels, heatmap_argmax, pixels_to_cells

__all__ = ["HeatmapCodec", "cells_to_pixels", "heatmap_argmax", "pixels_to_cells"]
