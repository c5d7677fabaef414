"""The project's error types: library code raises them with a message that says what to do.

Exit codes, one rule for every command (the CLI turns these into `error: <message>` and the code):
  0  done;
  1  the run stopped on its data or its output: bad or corrupt input, an --out that holds another run or
     is in use, a teacher that failed mid-run or gave nothing usable (what was done is kept: fix and rerun);
  2  fix the set-up: a flag, config file or environment value, or the teacher it names (none configured,
     unreachable, key refused, model not served; checked before any work starts): rerun after the fix;
  130 interrupted (Ctrl-C): rerun the same command to resume.
"""


class TextbookError(Exception):
    """The run stopped (exit code 1). The CLI prints `error: <message>` and exits with `exit_code`."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(TextbookError):
    """The command cannot run as set up: flags, config, environment or the teacher endpoint (exit code 2)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)
