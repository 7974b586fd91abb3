"""Optional second grading stage: a small CNN grades landmark-centred crops at native resolution.

The landmark network reads a 192-pixel input at about 1.6 mm per pixel; the cue of a disc bulge or protrusion is a
few millimetres at the posterior disc margin. This stage cuts a square of ``window_mm`` around every landmark from
the slice's native pixels (rotated so the local spine axis is vertical), grades it with :class:`CropGrader`, and the
predictor combines its probabilities with the grade head's.

Modules (each imported on its own; this file imports nothing):
    config: ``GradeStageConfig`` (the ``grade_stage`` section of the experiment config).
    crops: ``extract_crops``, ``spine_axis_angles`` - numpy/scipy only, no torch (a torch-free predict path can
        share them).
    model: ``CropGrader``, ``PerKindCropGrader`` (one network per kind, the default) - torch.
    cropset: crops and grade targets of annotated slices, cached once; cheap random re-crops for augmentation.

The stage's training (its LightningModule, Trainer, temperature fit and checkpoint payload) is the engine's, beside the
landmark network's recipe with which it shares the optimiser, schedule and temperature fit:
:mod:`spine_kp.engine.grade_stage_module` and :mod:`spine_kp.engine.grade_stage_train`. Nothing here imports
``spine_kp.engine`` or ``spine_kp.inference`` (``tests/test_layout.py``).
"""
