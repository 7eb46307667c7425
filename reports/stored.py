"""What the report reads from an output folder besides the cell records' numbers: the cells
themselves (current and foreign), the prices and claims of the matrix that wrote the folder
(OUT/matrix.toml, read with the report's own typed models, not the harness's matrix
validation), and the matrix's method order.

The matrix was validated when it ran; here a file that no longer reads as one (edited by hand,
truncated) is one :class:`ReportError` line naming the fix, never a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench import output
from bench.errors import UserError
from reports.records import Record


class ReportError(UserError, ValueError):
    """The stored results cannot make an honest report (stated in one line with the fix)."""


class StoredClaim(BaseModel):
    """A claim as OUT/matrix.toml stores it (``[[claims]]``; the matrix's ``Claim`` documents
    each field): the fields the findings read, typed; a key a later version adds is ignored.
    ``figure``: the id of the report's figure that shows it (an older folder: its title)."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    id: str = Field(min_length=1)
    claim: str = Field(min_length=1)
    source: str = ""
    metric: str = Field(min_length=3)
    method: str = Field(min_length=1)
    against: str | None = None
    against_metric: str | None = None
    expect: Literal["greater", "less", "within"] = "greater"
    null: float = 0.0
    range: list[float] | None = None
    scale: Literal["difference", "ratio"] = "difference"
    figure: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "StoredClaim":
        # what the findings' arithmetic relies on: a range for "within", two rows for a ratio
        if (self.expect == "within") != (self.range is not None) or (
                self.range is not None and not (len(self.range) == 2
                                                and self.range[0] < self.range[1])):
            raise ValueError("range must be [low, high] exactly where expect = 'within'")
        if self.scale == "ratio" and self.against is None and self.against_metric is None:
            raise ValueError("a ratio needs against or against_metric")
        return self


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _StoredPrices(BaseModel):
    model_config = ConfigDict(strict=True)
    prices: dict[str, Price]


def read_records(out: Path) -> tuple[list[Record], list[Record]]:
    """(the current matrix's cells in matrix order, cells in the folder from another
    configuration): see :func:`bench.output.records`. Only the first are ever averaged, and
    they carry the matrix's prices (:func:`priced`)."""
    current, other = output.records(out)
    return priced(current, read_prices(Path(out) / "matrix.toml")), other


def read_prices(toml: Path) -> dict[str, float]:
    """The prices of the matrix that wrote the folder (OUT/matrix.toml's ``[prices]``); none
    when it has none."""
    return _matrix_part(toml, "prices", {},
                        lambda raw: _StoredPrices.model_validate({"prices": raw}).prices)


def read_claims(toml: Path) -> list[StoredClaim]:
    """The claims of the matrix that wrote the folder (OUT/matrix.toml's ``[[claims]]``);
    none when the folder has no matrix.toml."""
    return _matrix_part(toml, "claims", [],
                        lambda raw: [StoredClaim.model_validate(c) for c in raw])


def _matrix_part(toml: Path, key: str, empty: Any, parse: Any) -> Any:
    """OUT/matrix.toml's ``key`` through ``parse`` (``empty`` without the file or the key);
    a file that cannot be read so is one ReportError line naming the fix."""
    if not toml.is_file():
        return empty
    try:
        raw = tomllib.loads(toml.read_text()).get(key)
        return empty if raw is None else parse(raw)
    except (tomllib.TOMLDecodeError, ValidationError, AttributeError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise ReportError(f"{toml}: its {key} cannot be read ({first}); restore the file "
                          f"alignbench wrote, or rerun the matrix") from None


def priced(recs: list[Record], prices: dict[str, float]) -> list[Record]:
    """Each record with the matrix's ``prices`` and the dollars its training spent at them
    (``cost.dollars``: each priced unit of its budget's spent, shared stages included, times
    its price; unpriced units free). Priced here, from the matrix that wrote the folder, not
    by the cell: the prices move no number a cell computes, so changing them reruns nothing.
    Records as they are when the matrix prices nothing."""
    if not prices:
        return recs
    out = []
    for r in recs:
        spent = (r.get("budget") or {}).get("spent")
        if r.get("status") != "ok" or not isinstance(spent, dict):
            out.append(r)
            continue
        dollars = sum(float(spent.get(u) or 0.0) * p for u, p in prices.items())
        out.append({**r, "prices": dict(prices), "cost": {**(r.get("cost") or {}),
                                                          "dollars": dollars}})
    return out


def method_order(out: Path, recs: list[Record]) -> list[str]:
    """Methods in the order they first appear in the folder's plan (the matrix's cells in
    matrix order), or in the records where there is no plan. Rows and colours follow it."""
    cells = output.read_plan(out) or recs
    return list(dict.fromkeys([c["method"] for c in cells] + [r["method"] for r in recs]))


def matrix_text(out: Path) -> str:
    """OUT/matrix.toml as written, shown in the report; "" without one."""
    toml = Path(out) / "matrix.toml"
    return toml.read_text() if toml.is_file() else ""

