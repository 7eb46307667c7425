"""Experiment tracking where researchers already look: a cell's training curves streamed, as
they are recorded, to trackio (local SQLite), TensorBoard or wandb (offline), beside the cell's
result, which stays the record (the report reads only that). Off unless the matrix sets
``report_to``.

The TRL trainers report through their own ``report_to`` (``methods.common.trainer_args``); a
hand-written loop (PPO's) streams the points it records through :func:`curve_logger`.
:func:`session` surrounds a cell's training: it points the backend inside the output folder and
keeps it offline, sends its chatter to the cell's log, and finishes its runs however training
ends. One run per cell, named by the cell's key, in a project named after the output folder:

* trackio: ``OUT/tracking/PROJECT.db`` (``TRACKIO_DIR=OUT/tracking trackio show``);
* TensorBoard: ``OUT/cells/KEY/tracking/tensorboard/STAGE/`` (``tensorboard --logdir OUT/cells``);
* wandb: ``OUT/cells/KEY/tracking/wandb/offline-run-*/`` (``wandb sync`` uploads one if you wish).

Shared stages (SFT) are cached across matrices and report nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterator

from bench import output
from bench.api import Tracking
from bench.extras import require
from bench.logs import TRAINER_LOG

BACKENDS = ("none", "trackio", "tensorboard", "wandb")
FOLDER = "tracking"  # OUT/tracking (trackio) and OUT/cells/KEY/tracking (the others)

# where trackio would send metrics instead of its local database: unset while a cell trains
_TRACKIO_REMOTE = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_DATASET_ID",
                   "TRACKIO_BUCKET_ID", "TRACKIO_WEBHOOK_URL")

Point = dict[str, float]


def check(report_to: str, executor: str = "local") -> str | None:
    """Why ``report_to`` cannot stream from here, in one line naming the fix; None when it can.
    Asked once, when the matrix is validated (a missing package fails there, not mid-cell);
    :func:`check_folder` asks what depends on the output folder."""
    if report_to == "none":
        return None
    if find_spec(report_to) is None:  # each backend's package has its name; wandb is yours
        if report_to == "wandb":
            return ("report_to = 'wandb' needs the wandb package, which alignbench leaves to you "
                    "(it runs offline, under each cell's folder): pip install wandb")
        return (f"report_to = {report_to!r} needs the tracking extra: pip install "
                f"'alignbench[tracking]' (from a checkout: python3 -m pip install -e "
                f"\".[tracking]\")")
    if executor != "local":
        return (f"report_to = {report_to!r} streams from the local executor only (a Ray worker's "
                f"files stay on its node); set executor = \"local\" or report_to = \"none\"")
    return None


def check_folder(report_to: str, out: Path) -> str | None:
    """Why ``report_to`` cannot stream into the output folder ``out`` from this process (the
    run's preflight asks, once the folder is known); None when it can."""
    if report_to == "trackio":
        return _trackio_elsewhere(Path(out) / FOLDER)
    return None


def _trackio_elsewhere(folder: Path) -> str | None:
    """trackio reads TRACKIO_DIR once, when first imported: a process whose trackio already
    writes elsewhere (a second matrix run from the same Python session) cannot move it."""
    bound = getattr(sys.modules.get("trackio.utils"), "TRACKIO_DIR", None)
    if bound is None or Path(bound).resolve() == folder.resolve():
        return None
    return (f"report_to = 'trackio': trackio already writes to {bound} in this process (it reads "
            f"TRACKIO_DIR once, when imported), not into {folder}; run this matrix in a process "
            f"of its own, as `alignbench run` does")


def for_cell(report_to: str, out: Path, cell_dir: Path, key: str,
             config: dict[str, Any]) -> Tracking:
    """A cell's tracking settings: run ``key`` in the project named after ``out``."""
    if report_to == "none":
        return Tracking()
    return Tracking(backend=report_to, project=Path(out).resolve().name, run=key,
                    folder=cell_dir / FOLDER, shared=Path(out) / FOLDER, config=config)


def trainer_settings(t: Tracking) -> dict[str, Any]:
    """TRL's own reporting arguments for a cell's trainers: ``report_to`` the cell's backend,
    as the cell's run in its project, never to a Hugging Face Space."""
    if t.backend == "none":
        return {"report_to": "none"}
    return {"report_to": [t.backend], "run_name": t.run, "project": t.project,
            "trackio_space_id": None, "trackio_static_space_id": False}


# --------------------------------------------------------------------------- a cell's session


@contextlib.contextmanager
def session(t: Tracking) -> Iterator[None]:
    """While a cell trains: its backend pointed inside the output folder and kept offline (the
    environment variables the TRL integrations read), what the backend prints in the cell's
    log instead of the terminal, and its runs finished however training ends. A cell computed
    again (after a failure, or ``--fresh``) replaces what its earlier attempt streamed."""
    if t.backend == "none":
        yield
        return
    # what its earlier attempt streamed (as recorded; a user's file there stays)
    output.remove_written(t.folder.parent, t.folder.name)
    with _environ(_ENVIRONMENT[t.backend](t)), contextlib.redirect_stdout(_ToCellLog()):
        if t.backend == "trackio":
            _drop_trackio_run(t)
        try:
            yield
        finally:
            _FINISH[t.backend]()


def _trackio_env(t: Tracking) -> dict[str, str | None]:
    return {"TRACKIO_DIR": str(t.shared.resolve()), **dict.fromkeys(_TRACKIO_REMOTE)}


def _tensorboard_env(t: Tracking) -> dict[str, str | None]:
    # transformers' TensorBoard callback reads it; methods.common gives each stage a subfolder
    return {"TENSORBOARD_LOGGING_DIR": str(t.folder / "tensorboard")}


def _wandb_env(t: Tracking) -> dict[str, str | None]:
    # offline, no error reports, and its service's logs, caches and settings in the cell's
    # folder too (by default they go under the home folder)
    home = t.folder / "wandb"
    home.mkdir(parents=True, exist_ok=True)  # wandb wants its WANDB_DIR to exist
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(t.folder), "WANDB_PROJECT": t.project,
            "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_LOG_MODEL": "false",
            "WANDB_WATCH": "false", "WANDB_ERROR_REPORTING": "false",
            "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_CONFIG_DIR": str(home / "config"),
            "WANDB_DATA_DIR": str(home / "data")}


_ENVIRONMENT: dict[str, Callable[[Tracking], dict[str, str | None]]] = {
    "trackio": _trackio_env, "tensorboard": _tensorboard_env, "wandb": _wandb_env}


@contextlib.contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) while the block runs, then as it was."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class _ToCellLog(io.TextIOBase):
    """A stdout whose lines go to the cell's log (trackio prints where it logs, every run)."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")
    encoding = "utf-8"  # libraries read sys.stdout.encoding

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for line in self._ANSI.sub("", text).splitlines():
            if line.strip():
                TRAINER_LOG.info("%s", line.rstrip())
        return len(text)


def _trackio():
    return require("trackio", "report_to = 'trackio'")


def _drop_trackio_run(t: Tracking) -> None:
    """The run an earlier attempt of this cell left in the matrix's project, deleted."""
    trackio = _trackio()
    try:
        runs = list(trackio.Api().runs(t.project))
    except ValueError:  # no such project yet
        return
    for run in runs:
        if run.name == t.run:
            run.delete()


def _finish_trackio() -> None:
    trackio = sys.modules.get("trackio")
    if trackio is not None:
        with contextlib.suppress(RuntimeError):  # no run open: every stage finished its own
            trackio.finish()


def _finish_wandb() -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:  # transformers' callback leaves it open
        wandb.finish()


_FINISH: dict[str, Callable[[], None]] = {
    "trackio": _finish_trackio, "tensorboard": lambda: None, "wandb": _finish_wandb}


# --------------------------------------------------------------------------- a hand-written loop


@contextlib.contextmanager
def curve_logger(t: Tracking, curve: str) -> Iterator[Callable[[Point], None]]:
    """A function that streams one point of ``curve`` (a dict with ``step``, as
    ``TrainContext.curves`` holds it) to the cell's tracker, each value as ``CURVE/NAME`` at the
    point's step; it does nothing with tracking off. Use it inside the runner's
    :func:`session`, which points the backend at the output folder."""
    if t.backend == "none":
        yield lambda point: None
        return
    sink = _SINKS[t.backend](t, curve)
    try:
        yield sink.log
    finally:
        sink.close()


def _values(curve: str, point: Point) -> dict[str, float]:
    return {f"{curve}/{k}": float(v) for k, v in point.items() if k != "step"}


class _TensorBoard:
    """An event folder of the curve's own, ``tracking/tensorboard/CURVE``, beside the folders
    of the cell's TRL stages."""

    def __init__(self, t: Tracking, curve: str):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        self.curve = curve
        self.writer = SummaryWriter(log_dir=str(t.folder / "tensorboard" / curve))

    def log(self, point: Point) -> None:
        for tag, value in _values(self.curve, point).items():
            self.writer.add_scalar(tag, value, int(point["step"]))

    def close(self) -> None:
        self.writer.close()


class _Trackio:
    """The cell's run in the matrix's project, resumed (its TRL stages log into it too)."""

    def __init__(self, t: Tracking, curve: str):
        self.trackio, self.curve = _trackio(), curve
        self.run = self.trackio.init(project=t.project, name=t.run, config=t.config,
                                     resume="allow", embed=False, auto_log_cpu=False,
                                     auto_log_gpu=False)

    def log(self, point: Point) -> None:
        self.run.log(_values(self.curve, point), step=int(point["step"]))

    def close(self) -> None:
        self.trackio.finish()


class _Wandb:
    """The cell's offline run: the one its TRL stages opened, or a new one (the session
    finishes it). The curve keeps its own step axis, ``CURVE/step``."""

    def __init__(self, t: Tracking, curve: str):
        wandb = importlib.import_module("wandb")  # the user's package: not an extra of ours
        self.curve = curve
        self.run = wandb.run or wandb.init(mode="offline", dir=str(t.folder), project=t.project,
                                           name=t.run, config=t.config)
        self.run.define_metric(f"{curve}/step")
        self.run.define_metric(f"{curve}/*", step_metric=f"{curve}/step")

    def log(self, point: Point) -> None:
        self.run.log({f"{self.curve}/step": float(point["step"]), **_values(self.curve, point)})

    def close(self) -> None:
        pass


_SINKS: dict[str, type] = {"tensorboard": _TensorBoard, "trackio": _Trackio, "wandb": _Wandb}
