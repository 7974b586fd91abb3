"""The inference core: a trained network on decoded slices -> landmarks, grades and competition records.

Shared by training (validation runs the real predictor path), the crop grading stage, export and batch prediction,
so none of them depends on another's package. Imports stop at ``models``/``grading``: nothing here imports the
training recipe (``spine_kp.engine``) or the batch runner (``spine_kp.predict``).

Modules (backend-independent ones import no torch):
    decoding: network outputs -> landmarks (level-order decoding, grade probabilities), the ``Network`` interface.
    records: decoded landmarks of one image -> a competition-format ``StudyRecord`` with scores.
    pipeline: ``SlicePredictor``, decoded slices -> predictions for any backend (preprocessing, views, decoding).
    stage_common: the crop grading stage without its network (crops, probabilities, combination).
    infer: the torch network as a ``Network`` and ``infer_batch`` (torch).
    crop_stage: the crop grading stage with its torch grader (torch).
    predictor: ``Predictor``, a ``SlicePredictor`` rebuilt from a checkpoint (torch).
    onnx_predictor: ``OnnxPredictor``, a ``SlicePredictor`` on an exported ``.onnx`` file (ONNX Runtime, no torch).
    onnx_metadata: the checks of an export's metadata document (types, ranges, consistency with the graph).
"""
