"""The project's one error type: library code raises it with a message that says what to do."""


class TextbookError(Exception):
    """A user-facing failure. The CLI prints `error: <message>` and exits with `exit_code`."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(TextbookError):
    """Missing or invalid configuration (exit code 2, like a usage error)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)
