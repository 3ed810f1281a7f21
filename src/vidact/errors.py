"""The one exception type meant for users.

The CLI prints a :class:`VidactError` as a single line and exits with status 2.
Any other exception is a bug and keeps its traceback.
"""


class VidactError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


def first_few(items, limit: int = 3) -> str:
    """The first ``limit`` of ``items`` (strings), comma-separated, with ", ..." when there are more: a
    message names some of what is wrong, not all of a long list."""
    items = list(items)
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
