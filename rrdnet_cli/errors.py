"""The package's own exceptions.

The core raises these; only ``cli.py`` turns them into messages and exit codes, so the Python API
never prints or exits on its own.
"""

from typing import TypeVar


class RRDNetError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(RRDNetError):
    """An invalid configuration: unknown key, wrong type, out-of-range value, unreadable file."""


class UsageError(RRDNetError):
    """A request that cannot be carried out as asked (bad device, output equals input, ...)."""


class InputError(RRDNetError):
    """An input image that cannot be read or cannot be enhanced."""


class OutputError(RRDNetError):
    """An output that cannot be written."""


class OptimisationError(RRDNetError):
    """The optimisation diverged (a loss became NaN or infinite)."""


class Interrupted(KeyboardInterrupt):
    """A batch stopped by Ctrl-C (or SIGTERM) part-way; ``summary`` holds the files finished before.

    A ``KeyboardInterrupt``, so code that already handles Ctrl-C keeps working.
    """

    def __init__(self, summary=None):
        super().__init__("interrupted")
        self.summary = summary


ErrorKind = TypeVar("ErrorKind", bound=RRDNetError)


# Constructors for the messages the core repeats, so that every file reads and words them alike.


def naming(name: object, message: str) -> str:
    """``message`` led by ``name`` (``photo.jpg: file is empty``), unless it already starts so."""
    name = str(name)
    return message if message.startswith(name) else f"{name}: {message}"


def os_failure(kind: type[ErrorKind], name: object, what: str, error: OSError) -> ErrorKind:
    """``kind("NAME: WHAT (the system's reason)")`` for an ``OSError``, e.g. ``cannot write``."""
    return kind(f"{name}: {what} ({error.strerror or error})")


def cannot_write(path: object, error: OSError) -> OutputError:
    """``OutputError("PATH: cannot write (reason)")``."""
    return os_failure(OutputError, path, "cannot write", error)


# Control characters as escapes (a newline as \n): a file name may hold any of them, and every
# message, like every row of a table, is one line.
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def printable(text: str) -> str:
    """``text`` with its control characters shown as escapes, so that it prints as one line."""
    return text.translate(_ESCAPED)
