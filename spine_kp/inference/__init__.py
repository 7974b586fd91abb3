"""The inference core: a trained network on decoded slices -> landmarks, grades and competition records.

Shared by training (validation runs the real predictor path), the crop grading stage, export and batch prediction,
so none of them depends on another's package. Imports stop at ``models``/``grading``: nothing here imports the
training recipe (``spine_kp.engine``) or the batch runner (``spine_kp.predict``).

Modules (backend-independent ones import no torch):
    trained_labels: ``TrainedLabels``, the landmarks and grades a model was trained on.
    card, card_checks, checkpoint_card: the model card (``ModelCard``), its checks, and its reading from a checkpoint.
    network_outputs: network outputs -> landmarks (level-order decoding, grade probabilities), the ``Network``
        interface.
    records: decoded landmarks of one image -> a competition-format ``StudyRecord`` with scores.
    slice_predictor: ``SlicePredictor``, decoded slices -> predictions for any backend (preprocessing, views,
        decoding).
    crop_stage_base: the crop grading stage without its network (crops, probabilities, combination).
    torch_network: the torch network as a ``Network`` (torch).
    crop_stage: the crop grading stage with its torch grader (torch).
    torch_predictor: ``Predictor``, a ``SlicePredictor`` rebuilt from a checkpoint (torch).
    ensemble: a fold ensemble predicting as one model (torch).
    onnx_predictor: ``OnnxPredictor``, a ``SlicePredictor`` on an exported ``.onnx`` file (ONNX Runtime, no torch).
    onnx_metadata: the model card of an export, checked against its graph (and the format-1 upgrade).
"""
