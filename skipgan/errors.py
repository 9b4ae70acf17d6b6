"""The one exception type for bad user input.

Anything the user can fix (a missing file, a corrupt image, a wrong flag) raises `InputError` with a one-line
message that names the file or argument and says what to do. The CLI turns it into `skipgan: error: ...` on
stderr and exit code 2, without a traceback.
"""


class InputError(Exception):
    """Bad input that the user can fix; the message is one line and names the culprit."""


class BadImageError(InputError):
    """One image that cannot be used: corrupt, of an unsupported kind, over a cap (skipgan.data.limits), with
    values out of range. `skipgan score` reports it on that image's line and scores the rest (as the scanner does);
    training and evaluation stop on it unless `--skip-bad`, which skips every BadImageError.

    `reason` is the message without the path (the scanner's and `skipgan score`'s error lines put the path in its
    own field); str() is "PATH: reason", one line."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
