"""Export a trained checkpoint for other runtimes (``spine-kp export``): :mod:`spine_kp.export.onnx`."""
