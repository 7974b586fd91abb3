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
    stage: training (a small LightningModule + Trainer) and the checkpoint payload. Training code: it sits at the
        engine's level of the import order (it uses ``engine.losses``); the predictor never imports it.
"""
