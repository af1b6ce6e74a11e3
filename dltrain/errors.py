"""What a user gets wrong, as one line each: ConfigError, and the closest valid name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A user mistake in the configuration; carries every problem found, one line each."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple:  # pickled to a parent process as itself (distributed runs)
        return (type(self), (self.problems,))


def closest(word: Any, choices: Iterable[str]) -> str | None:
    """The choice most similar to `word`, if any is reasonably close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: Any, choices: Iterable[str], prefix: str = "") -> str:
    """Return " Did you mean 'x'?" for the closest choice, or '' when nothing is close."""
    match = closest(word, choices)
    return f" Did you mean '{prefix}{match}'?" if match else ""
