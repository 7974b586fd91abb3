"""Lightning checkpoints written atomically: a full disk or a kill mid-save leaves the previous file intact.

Lightning's :class:`~pytorch_lightning.plugins.io.TorchCheckpointIO` serialises into memory and then writes the
bytes over ``best.ckpt``/``last.ckpt`` in place, so running out of space halfway leaves a truncated checkpoint and the
previous one is gone. :class:`AtomicCheckpointIO` saves into a temporary file in the same folder, fsyncs it and renames
it onto the target (:func:`spine_kp.io.atomic.atomic_output`, also used by :func:`spine_kp.checkpoint.write_entry`);
on any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from spine_kp.io.atomic import atomic_output


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose ``save_checkpoint`` is temp file + fsync + ``os.replace`` (local paths)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: the state Lightning dumps (model, optimizer, loops, callbacks).
            path: the target file, e.g. ``RUN/checkpoints/best.ckpt``.
            storage_options: unsupported, as in :class:`TorchCheckpointIO`.

        Raises:
            OSError: writing failed (e.g. ENOSPC); ``path`` then still holds the previous checkpoint, if any.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        with atomic_output(Path(path)) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
