"""What a handler raises to steer its job: retry later (with a hint), or give up at once."""

from __future__ import annotations


class RetryLater(Exception):
    """Try again later; ``retry_after`` (seconds) is the remote side's hint, e.g. from a ``Retry-After`` header.

    Without a hint the runner backs off exponentially with jitter. Each retry still counts as an attempt.
    """

    def __init__(self, message: str = "retry later", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(Exception):
    """Retrying cannot help (the marketplace rejected the data, the object is gone): the job goes dead at once."""
