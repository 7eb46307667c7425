"""Each cell's own log file, ``OUT/cells/KEY/log.txt``, on both executors: the trainers' log
lines (``TRAINER_LOG``, which never reaches the terminal), a method's own lines (``ctx.log``,
:func:`method_log`: its INFO in the file, its warnings also on the terminal) and alignbench's
warnings while the cell runs (which also reach the terminal, as before)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

TRAINER_LOG = logging.getLogger("alignbench.trainer")
TRAINER_LOG.propagate = False  # a dict per logging step: the cell's file, not the terminal
TRAINER_LOG.setLevel(logging.INFO)
# outside a cell (a world's build) its records are dropped, not printed by logging's last resort
TRAINER_LOG.addHandler(logging.NullHandler())


@contextlib.contextmanager
def cell_log(path: Path) -> Iterator[None]:
    """While the block runs, the trainers' lines and alignbench's own records (at the level
    its logger is set to) are appended to ``path``."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    loggers = (logging.getLogger("alignbench"), TRAINER_LOG)
    for lg in loggers:
        lg.addHandler(handler)
    try:
        # a library's Python warnings while the cell runs (TRL reading transformers'
        # deprecated is_gradient_checkpointing on every generation, say) are the cell's
        # record, not the terminal's: a run with no progress bars printed tracebacks-to-be
        with warnings.catch_warnings():
            warnings.showwarning = _warning_to_log
            yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()


def method_log(name: str) -> logging.Logger:
    """The logger a method's training gets (``TrainContext.log``): every line at INFO and above
    reaches the cell's ``log.txt``; its warnings and errors reach the terminal as well, as
    alignbench's own do. A child of ``alignbench`` would drop its INFO lines at the terminal's
    WARNING level before any file saw them."""
    lg = logging.getLogger(f"alignbench.method.{name}")
    if not lg.handlers:  # once per name and process
        lg.setLevel(logging.INFO)
        lg.propagate = False
        lg.addHandler(_ToCell())
    return lg


class _ToCell(logging.Handler):
    """INFO lines to the cell's file only (``TRAINER_LOG``); warnings to alignbench's logger,
    whose handlers are the cell's file and, through the root, the terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            logging.getLogger("alignbench").handle(record)
        else:
            TRAINER_LOG.handle(record)


@contextlib.contextmanager
def to_trainer_log(name: str) -> Iterator[None]:
    """While the block runs, logger ``name``'s warnings (a library's, such as transformers'
    load report for a reward model's new head, expected every time) go to the cell's log
    (``TRAINER_LOG``) instead of the terminal, whatever verbosity the library was set to."""
    lg = logging.getLogger(name)
    handler = _Forward()
    saved = lg.propagate, list(lg.handlers), lg.level
    lg.handlers, lg.propagate = [handler], False
    lg.setLevel(min(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        lg.propagate, lg.handlers = saved[0], saved[1]
        lg.setLevel(saved[2])


@contextlib.contextmanager
def library_warnings_to_log() -> Iterator[None]:
    """While the block runs, libraries' Python warnings (deprecations a user cannot act on) go
    to ``TRAINER_LOG`` instead of the terminal: a cell's log inside a cell, nowhere outside."""
    with warnings.catch_warnings():
        warnings.showwarning = _warning_to_log
        yield


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    TRAINER_LOG.warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)


class _Forward(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        TRAINER_LOG.handle(record)
