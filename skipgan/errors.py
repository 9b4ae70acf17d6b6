"""The one exception type for bad user input.

Anything the user can fix (a missing file, a corrupt image, a wrong flag) raises `InputError` with a one-line
message that names the file or argument and says what to do. The CLI turns it into `skipgan: error: ...` on
stderr and exit code 2, without a traceback.
"""


class InputError(Exception):
    """Bad input that the user can fix; the message is one line and names the culprit."""
