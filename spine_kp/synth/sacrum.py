"""The fused sacrum of randomised phantoms: bone bridging the sacral junctions, with a faint remnant line.

The ordinary phantom draws every sacral segment as a body of its own, outlined by cortex all round, so the
sacrum reads as more small vertebrae with disc-like gaps. In a real adult the segments are one bone: marrow runs
through the junctions, the anterior and posterior cortex is continuous (with a small step where the segment
size changes) and a junction shows at most as a thin transverse line, dark (sclerotic) or bright (a remnant disc,
mostly at S1-S2). :func:`paint_fused_junction` paints that over the already drawn bodies, in the junction's disc
frame (u posterior, v superior; see :mod:`spine_kp.synth.anatomy`). Only junctions the study's
:class:`~spine_kp.synth.variant.AnatomyVariant` names are fused; labels are left as the bodies and remnant drew
them.
"""

from __future__ import annotations

import numpy as np

from spine_kp.synth.anatomy import Anatomy, Disc, depth_profile
from spine_kp.synth.canvas import Canvas, rounded_box

REACH = 5.0  # mm the bridge reaches into each body beyond its endplate: past the cortex and the rounded corners
RIM = 1.3  # cortical thickness of the sacrum (as ``render.paint_body`` draws sacral bodies)


def paint_fused_junction(cv: Canvas, an: Anatomy, d: Disc) -> None:
    """Bridge the junction ``d`` between two sacral segments with bone and draw its remnant line."""
    remnant = an.variant.remnant(d.name)
    if remnant is None:
        return
    up, lo = an.bodies[d.upper], an.bodies[d.lower]
    half_v = 0.5 * d.height + REACH
    depth = min(up.half_depth, lo.half_depth)  # the smaller segment's AP depth: the step lies in the larger one
    reach = max(half_v, d.half_depth) + 4.0
    y, z = d.frame.y, d.frame.z
    box = cv.box((-d.half_width, d.half_width, y - reach, y + reach, z - reach, z + reach))
    if box is None:
        return
    x = cv.xs(box)
    lat = cv.lat(x, 0.0, min(up.half_width, lo.half_width))
    if isinstance(lat, float) and lat <= 0.0:
        return
    u, v = d.frame.local(cv.y[box], cv.z[box])
    g = depth_profile(x / d.half_width)
    half_u = depth * g + 1e-3
    uc = d.half_depth - half_u  # posterior walls line up along the sacrum (the chain hinges there)
    ap = np.abs(u - uc) - half_u
    # the AP cortex fades out towards the bodies' centres, where their own outline takes over
    along = cv.soft(np.abs(v) - half_v, blur=3.0)
    cv.paint(box, cv.soft(ap) * along * lat, "cortex")
    marrow = cv.marrow(0.5 * (up.fat_fraction + lo.fat_fraction))
    inner = cv.soft(np.maximum(ap + RIM, np.abs(v) - half_v), blur=2.0) * cv.lat(x, 0.0, d.half_width - RIM)
    cv.paint(box, inner, marrow, texture=0.12)
    line = rounded_box(u - uc, v, half_u - RIM, max(0.45 * d.height, 0.6), 0.5)
    tissue = cv.mix("remnant", "nucleus", 0.6) if remnant > 0 else cv.signals["cortex"]
    cv.paint(box, cv.soft(line) * inner * abs(remnant), tissue)
