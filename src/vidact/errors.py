"""The one exception type meant for users.

The CLI prints a :class:`VidactError` as a single line and exits with status 2.
Any other exception is a bug and keeps its traceback.
"""


class VidactError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""
