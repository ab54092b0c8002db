"""One exception type for everything a user can get wrong, so the CLI and server can show it as one line."""


class TextclassError(Exception):
    """A problem with the user's input, checkpoint or environment; its message says what to do."""


class CheckpointError(TextclassError):
    """The checkpoint folder or hub id cannot be loaded as asked."""


class InputError(TextclassError):
    """Texts or options passed to a classifier are not usable."""


class LimitError(InputError):
    """Input past a stated bound (windows, tokens, rows); `limit` is the bound. The server answers 413."""

    def __init__(self, message: str, limit: int | None = None):
        super().__init__(message)
        self.limit = limit
