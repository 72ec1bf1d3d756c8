"""The one exception type that the CLI turns into a one-sentence message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a message saying what was wrong and what is accepted."""
