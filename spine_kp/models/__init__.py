"""Networks: backbones (multi-scale encoders), decoders, heads and the assembled :class:`LandmarkNet`.

Import ``spine_kp.models.net`` for ``create_model``/``ModelConfig``; this package file stays import-light so a
helper module (e.g. ``norm``) can be imported without pulling in every registered architecture.
"""
