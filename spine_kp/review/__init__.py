"""``spine-kp review``: correct predictions in the browser and write the result as new training labels.

Torch-free: it reads DICOM with :mod:`spine_kp.io`, files with the competition-format readers, and serves a static
page (``static/``) from a Starlette app (the ``review`` extra: ``pip install -e ".[review]"``).
"""
