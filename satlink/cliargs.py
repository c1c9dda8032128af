"""The command line's argument types and error reporting: one line and exit code 2 for every
error of input, file or environment (naming the flag, file or key at fault); a traceback only
for bugs, or with ``--debug``.

>>> one_line(OSError(28, "No space left on device", "out/previews/007.png"))[:46]
'out/previews/007.png: No space left on device '
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "OneLineParser",
    "existing_path",
    "int_at_least",
    "is_user_error",
    "one_line",
    "scheduler_address",
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line (naming the flag) and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"satlink: error: {message} (see {self.prog} --help)\n")


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``lo`` (argparse names the flag in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse


def existing_path(text: str) -> Path:
    """An argparse type: a file or folder that exists (checked before anything loads)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no file or folder at {text}")
    return path


def scheduler_address(text: str) -> str:
    """An argparse type: a Dask scheduler address, checked before anything connects."""
    from satlink.sweep.core import SCHEDULER_ADDRESS

    if not SCHEDULER_ADDRESS.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(
            f"not a Dask scheduler address: {text!r}; expected [protocol://]host[:port], "
            "e.g. tcp://10.0.0.5:8786"
        )
    return text.strip()


def one_line(exc: BaseException) -> str:
    """An exception as one line that names the file at fault where there is one."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
        if exc.errno == errno.ENOSPC:
            text += " (the disk is full; free space or choose another --out)"
    elif type(exc) is KeyError:  # str() of a bare KeyError is just the quoted key
        text = f"missing key {exc}"
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" ..." if len(lines) > 1 else "")


def is_user_error(exc: BaseException) -> bool:
    """Errors of input, files and environment (one line), not bugs (a traceback)."""
    if isinstance(exc, ValueError | OSError | LookupError | EOFError):
        return True
    # the project's own exception classes all carry messages written for the user
    return type(exc).__module__.split(".")[0] in ("codec", "satlink")
