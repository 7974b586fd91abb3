"""Anatomical domain randomisation of the phantom (``SynthOptions.randomize``): what real sagittal T2 shows.

Side by side with real clinical lumbar T2 slices (mid-sagittal, 8-bit, 300-380 mm fields of view), the ordinary
phantom differed where a network learns to count levels:

- its chain ended at T10, so a tall field of view showed an empty canal above a last body: a second end to
  count from. Real fields of view show T8-T9 over T12 as often as not (the T12-L1 disc lies 40-125 mm below
  the top edge), so the randomised chain starts at T6;
- its sacrum continued the lumbar line as a column of small boxes with disc-like gaps between them, a chain a
  network keeps counting down. The real sacrum turns back at a sharp lumbosacral angle and is one fused bone
  whose segments meet at faint transverse lines, only S1-S2 sometimes showing a thin remnant disc;
- its lordosis spanned less than real studies do (flat to strongly curved spines);
- its conus was thin next to the cord real T2 images show in the lower thoracic canal.

:class:`AnatomyVariant` holds these choices for one study; the default is the ordinary phantom, so studies
generated without ``randomize`` stay byte-identical. :func:`sample_variant` draws them from a generator of
their own, so the ordinary random streams are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# levels the randomised chain adds above the ordinary phantom's first body (T10), cranio-caudally
THORACIC_EXTRA: tuple[str, ...] = ("T6", "T7", "T8", "T9")
# sacral junctions that fuse (the coccygeal ones stay joints), cranio-caudally
SACRAL_JUNCTIONS: tuple[str, ...] = ("S1-S2", "S2-S3", "S3-S4", "S4-S5")


@dataclass(frozen=True)
class AnatomyVariant:
    """Anatomy choices beyond the ordinary phantom. The default changes nothing.

    Attributes:
        thoracic: extra levels above T10, cranio-caudally (names from ``THORACIC_EXTRA``).
        lordosis: lumbar lordosis in degrees (T12 to S1), replacing the ordinary draw; None keeps it.
        lumbosacral: degrees added to the L5-S1 wedge (a sharper turn of the sacrum).
        sacral_curve: factor on the sacral and coccygeal kyphosis (< 1: a straighter sacrum).
        remnants: junction name -> signal of the fused junction's remnant line, -1 (dark, cortical) .. 1 (bright,
            disc-like); a junction named here is drawn fused, bridged by bone (see ``sacrum``).
        cord: factor on the spinal cord radius.
    """

    thoracic: tuple[str, ...] = ()
    lordosis: float | None = None
    lumbosacral: float = 0.0
    sacral_curve: float = 1.0
    remnants: tuple[tuple[str, float], ...] = ()
    cord: float = 1.0

    def remnant(self, junction: str) -> float | None:
        """Remnant-line signal of a fused junction, None when the junction is drawn as an ordinary gap."""
        return dict(self.remnants).get(junction)


def sample_variant(rng: np.random.Generator) -> AnatomyVariant:
    """Draw one randomised study's anatomy choices.

    - the chain starts at T6 (above any field of view the plans draw);
    - lordosis 12-80 degrees (the ordinary phantom: 28-62);
    - an L5-S1 wedge 0-18 degrees sharper, a sacral kyphosis at 40-110 % of the ordinary one;
    - in 85 % of studies a fused sacrum: S1-S2 remnant anywhere from dark to bright, the lower junctions fainter;
      otherwise the ordinary separate segments;
    - a cord 1.0-1.5 times the ordinary radius.
    """
    lordosis = float(rng.uniform(12.0, 80.0))
    lumbosacral = float(rng.uniform(0.0, 18.0))
    curve = float(rng.uniform(0.4, 1.1))
    fused = bool(rng.random() < 0.85)
    amp = rng.uniform(-1.0, 1.0, len(SACRAL_JUNCTIONS)) * np.array([1.0, 0.5, 0.35, 0.25])
    remnants = tuple((j, float(a)) for j, a in zip(SACRAL_JUNCTIONS, amp)) if fused else ()
    return AnatomyVariant(
        thoracic=THORACIC_EXTRA,
        lordosis=lordosis,
        lumbosacral=lumbosacral,
        sacral_curve=curve,
        remnants=remnants,
        cord=float(rng.uniform(1.0, 1.5)),
    )
