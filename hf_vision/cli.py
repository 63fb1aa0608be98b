"""What every script's `__main__` shares: one clear error line instead of a traceback, and logs without ANSI codes.

    if __name__ == "__main__":
        run_main(lambda argv: main(parse_args(argv)))

A failure prints `error: <what went wrong>` and exits with status 1; `--debug` anywhere on the command line (or the
root logger at DEBUG, or HF_VISION_DEBUG=1) lets the full traceback through instead.

transformers 5.x writes escape codes into its load report (missing / unexpected weights): the title always bold,
the table's cells coloured whenever *stdout* is a terminal, although logs go to stderr; so `2> run.log`, a pipe or
a launcher's log file gets raw codes. `plain_logs` strips them in every handler whose stream is not a terminal
(transformers has no switch for it).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
DEBUG_FLAG = "--debug"


class StripAnsi(logging.Formatter):
    """Wraps a handler's formatter and removes ANSI escape sequences from what it formats.

    A formatter, not a filter: filters share and would mutate the record that a terminal handler also prints."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return ANSI.sub("", self.inner.format(record))


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or stream-less handlers
        return False


def plain_logs(logger_names: Sequence[str] = ("", "transformers", "accelerate", "datasets", "huggingface_hub")) -> None:
    """Strip ANSI codes in every handler of these loggers (root included, and logging's last-resort stderr
    handler) that does not write to a terminal.

    Handlers also see records propagated from child loggers (e.g. transformers.modeling_utils), which logger
    filters would not. Idempotent.
    """
    handlers = [h for name in logger_names for h in logging.getLogger(name).handlers]
    for handler in handlers + ([logging.lastResort] if logging.lastResort else []):
        if not _is_terminal(handler) and not isinstance(handler.formatter, StripAnsi):
            handler.setFormatter(StripAnsi(handler.formatter))


def one_line(error: BaseException) -> str:
    """`error`'s message on one line (its first line, with a count of what follows), prefixed by its type."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    more = f" (+{len(lines) - 1} more lines; --debug shows all)" if len(lines) > 1 else ""
    return f"{type(error).__name__}: {lines[0]}{more}"


def debug_requested(argv: Sequence[str]) -> bool:
    return (DEBUG_FLAG in argv or os.environ.get("HF_VISION_DEBUG", "") not in ("", "0")
            or logging.getLogger().isEnabledFor(logging.DEBUG))


def run_main(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> Any:
    """Run a script's `main(argv)` (argv without --debug); a failure becomes one `error:` line and exit status 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    plain_logs()
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # SystemExit (argparse, explicit exits) passes through untouched
        if debug:
            raise
        print(f"error: {one_line(error)}  [{DEBUG_FLAG} for the traceback]", file=sys.stderr)
        raise SystemExit(1) from None
