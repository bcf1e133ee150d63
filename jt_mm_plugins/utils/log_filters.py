"""Log messages of the pinned stack that no user can act on, dropped by their exact text.

Only these messages go, nothing else of the same logger: every other warning still shows.
"""
import logging

#: (message prefix, why no user can act on it)
UNACTIONABLE_MESSAGES = (
    ('"FileClient" will be deprecated in future.',
     "mmengine 0.10.7's CheckpointHook.before_train builds a FileClient whatever the config says"),
    ('"HardDiskBackend" is the alias of "LocalBackend"',
     'the same FileClient, resolving its default backend name'),
)


class UnactionableMessageFilter(logging.Filter):
    """Drops the records of :data:`UNACTIONABLE_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(prefix) for prefix, _ in UNACTIONABLE_MESSAGES)


def drop_unactionable_messages(logger: logging.Logger) -> None:
    """Attach :class:`UnactionableMessageFilter` to ``logger`` (once)."""
    if not any(isinstance(f, UnactionableMessageFilter) for f in logger.filters):
        logger.addFilter(UnactionableMessageFilter())
