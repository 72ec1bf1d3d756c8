"""The one exception type that the CLI turns into a one-sentence message and exit code 2.

A library error says what is wrong in the library's terms: it quotes the parameters it is
about in backticks (`ways`) and lists them in `parameters`, so that the CLI can show each as
the flag that sets it (--ways) while `str(exc)` keeps the library's names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class UserError(Exception):
    """Bad input from the user: a message saying what was wrong and what is accepted.

    `parameters` are the library parameters the message quotes, each as `name` in backticks;
    an entry may be qualified as 'owner.name' (e.g. 'read_runs.root') where the bare name
    would not tell which input it is. `render` shows each quoted parameter under another
    name, e.g. the CLI's flag for it.
    """

    def __init__(self, message: str, parameters: Sequence[str] = ()) -> None:
        super().__init__(message, tuple(parameters))  # both in args, so that a pickled error keeps them
        self.message = message
        self.parameters = tuple(parameters)

    def __str__(self) -> str:
        return self.message

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each quoted parameter replaced by `name(parameter)`: how a front end shows its terms."""
        text = self.message
        for parameter in self.parameters:
            text = text.replace(f"`{parameter.rsplit('.', 1)[-1]}`", name(parameter))
        return text
