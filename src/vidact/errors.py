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


def nonfinite_scores(what: str) -> VidactError:
    """The error for NaN/inf model scores, which no metric can rank (every comparison with NaN is
    false); ``what`` says how many of what, naming the first few."""
    return VidactError(
        f"the model gave NaN/inf scores for {what}: its weights or its precision are broken (a diverged "
        "checkpoint, float16 overflow); check the checkpoint, or evaluate in float32 (TRAIN.MIXED_PRECISION False)"
    )
