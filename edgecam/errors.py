"""One error family for everything a user can get wrong.

The library raises these with a one-line message that names the file, key or value; the CLI
turns them into ``Error: ...`` and a non-zero exit code instead of a traceback.
"""


class EdgecamError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, ...)."""

    exit_code = 1


class ConfigError(EdgecamError):
    """A config file or ``key=value`` override is malformed or names an unknown key."""

    exit_code = 2


class DataError(EdgecamError):
    """The image folders cannot make a dataset (missing folder, empty label, ...)."""


class ModelError(EdgecamError):
    """A model file is missing, corrupt, or not an image classifier."""


class DownloadError(EdgecamError):
    """A download failed: host unreachable, HTTP error, ended early, checksum mismatch."""


class OutputError(EdgecamError):
    """A result cannot be written (folder under a file, read-only, full disk, ...)."""


class ActionError(EdgecamError):
    """A page action that cannot be done now; ``status`` is the HTTP status the page gets."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ExportError(EdgecamError):
    """Export failed its quality gate (e.g. int8 lost too much accuracy)."""
