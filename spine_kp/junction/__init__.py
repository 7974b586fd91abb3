"""Optional check of the level count: a crop CNN finds the lumbosacral junction (L5-S1) near the chain's caudal end.

The landmark network reads the whole image at about 1.6 mm per pixel and names every level; on real studies its
misses are whole-level shifts, where the chain stops one disc short of the sacrum or runs on into it (a thin
transitional disc at the junction, sacral segments that look like discs). This check crops the slice's native pixels
around the chain's lowest discs and two discs extrapolated below them, classifies each crop by its offset from the
junction, and moves the chain's labels when another disc is the junction by a clear margin.

Modules (each imported on its own; this file imports nothing):
    config: ``JunctionConfig`` (the ``junction`` section of the experiment config).
    geometry: candidates, hypotheses, the relabelled chain - numpy only.
    model: ``JunctionNet`` - torch.

Training is the engine's (:mod:`spine_kp.engine.junction_train`); the check at predict time is
:mod:`spine_kp.inference.junction_check`. Nothing here imports ``spine_kp.engine`` or ``spine_kp.inference``.
"""
