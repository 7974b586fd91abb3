"""Batch prediction over a data root: runner, distributed prediction, outputs (JSON, CSV, overlays, DICOM SR).

The model itself (network, decoding, records, checkpoint and ONNX predictors) is the inference core in
:mod:`spine_kp.inference`; this package only feeds it studies and writes what it returns.
"""
