"""Calibration of grade probabilities and emitted scores: fit, apply and measure, in one place.

Modules (each imported on its own; this file imports nothing):
    metrics: reliability bins, ECE and Brier score of scored outcomes, and the grade NLLs (what ``spine-kp evaluate``
        reports, and what the fits minimise).
    fit: temperature scaling of grade logits (one T per kind) and Platt scaling of scores (one map per kind), and the
        checkpoint entry of the fitted temperatures (:class:`~spine_kp.calibration.fit.Calibration`).
    apply: temperatures and score maps at prediction time: grade probabilities of scaled logits, the Platt map, the
        stored score maps and the calibrated score of an emitted point.

**Floor.** The package sits just above the leaves: it imports numpy, scipy (only when fitting) and the leaf modules
(``spine_kp.schema``), never torch and no other spine_kp package. Every user sits above it, so there is no
package-level import cycle:

* ``evaluation`` imports :mod:`~spine_kp.calibration.metrics` to report ECE (and stays torch-free);
* ``inference`` imports :mod:`~spine_kp.calibration.apply` to write calibrated scores;
* ``engine`` imports :mod:`~spine_kp.calibration.fit` to fit the grade head's and the crop stage's temperatures.

What needs the 8 mm test, fitting the score maps on the validation split's predictions, needs the predictor and the
evaluator too, so it lives in :mod:`spine_kp.engine.score_map_fit`: it calls ``evaluation`` for the 8 mm rules
(:func:`spine_kp.evaluation.matching.within_radius`, :func:`spine_kp.evaluation.evaluate.evaluate_records`) and this
package for the fit. ``tests/test_layout.py`` guards both directions.
"""
