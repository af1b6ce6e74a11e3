"""Every failure a command meets, as one line: what went wrong, and where the details are.

Commands print `prog: <line>` on stderr and exit non-zero; the traceback, when there is one worth
keeping, goes only to the log files (a run's dltrain.log), never to the terminal.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from dltrain.closed_output import guard_output
from dltrain.errors import ConfigError
from dltrain.files import SaveError, UnreadableFile
from dltrain.log_files import to_log_files

log = logging.getLogger("dltrain")
EXPECTED = ("DivergedError",)  # failures whose message says all: no traceback kept


def failure(error: BaseException, run_dir: Path | None = None) -> str:
    """One line for an error that stopped a job (the traceback goes to the log files)."""
    if isinstance(error, SaveError) or type(error).__name__ in EXPECTED:
        return f"stopped: {error}"
    line = describe(error)
    if isinstance(error, OSError | UnreadableFile | MemoryError):
        return line
    if _log_traceback(error) and run_dir is not None:
        line += f" (traceback in {run_dir / 'dltrain.log'})"
    return line


def describe(error: BaseException) -> str:
    """An error's type and the first line of its message (with the file, for OSErrors)."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    if isinstance(error, MemoryError) or "can't allocate memory" in str(error):
        return f"out of memory: {_first_line(error) or 'an allocation failed'}"
    if isinstance(error, UnreadableFile | ConfigError):
        return str(error)
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")[:300]


def _log_traceback(error: BaseException) -> bool:
    """Write the traceback to the log files only (not the console); whether one took it."""
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "failed", (), (type(error), error, None)
    )
    record.exc_info = (type(error), error, error.__traceback__)
    return to_log_files(record)


def print_problems(prog: str, problems: list[str]) -> None:
    """Print a command line's problems without a traceback: one line, or one per problem."""
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        print(f"{prog}: {unique[0]}", file=sys.stderr)
        return
    listed = "".join(f"\n  - {p}" for p in unique)
    print(f"{prog}: {len(unique)} problems in the configuration:{listed}", file=sys.stderr)


def command(prog: str, body: Callable[[], None]) -> None:
    """Run a command's body; any failure is one line on stderr (exit 2 for a user mistake)."""
    guard_output()
    try:
        body()
    except ConfigError as e:
        for problem in dict.fromkeys(e.problems):
            print(f"{prog}: {problem}", file=sys.stderr)
        sys.exit(2)
    except UnreadableFile as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(2)
    except SaveError as e:  # an output that cannot be written: nothing else was changed
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a full disk, no memory, a bad file, a bug: never a traceback
        print(f"{prog}: {failure(e)}", file=sys.stderr)
        sys.exit(1)
    finally:
        gc.freeze()  # the exit need not collect every imported module: ~1 s less per command
