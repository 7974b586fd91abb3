"""The one base class of the mistakes a user can fix: a bad file, record, field, path or option value.

``spine-kp`` prints a :class:`UserError` as a single ``error: <message>`` line and exits with status 2 (``--debug``
shows the traceback instead); every other exception is a bug and keeps its traceback. The user-facing error
classes of the package (``ConfigError``, ``SchemaError``, ``AnnotationError``, ``IngestError`` and its
``MissingDataError``, ``CheckpointError``, ``SpacingError``) subclass it next to their builtin base, so
``except ValueError`` around library calls keeps working. A message names the file, record or field, and the fix
where there is one.

A leaf module: it imports nothing of the project.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave (file, record, field, path or option); the message names it."""


class MissingInputError(UserError, FileNotFoundError):
    """A file the user named, or one that a flag expects in a folder the user named, does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """Writing would replace existing output the user did not ask to replace."""
