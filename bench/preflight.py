"""The one place a matrix is refused before anything runs: first everything the matrix itself
can get wrong (its budget, its claims' rows, its tracker, its executor), before the output
folder or the world is touched; then what only the built world can tell (each method's and each
eval's settings against it, its data against the budget, the compute caps against the start
stages' planned tokens), before any cell trains. The file's and the command line's values arrive
here alike: both are parsed and validated by :mod:`bench.config` first."""

from __future__ import annotations

from pathlib import Path

from bench import config as C
from bench import output, store, tracking
from bench.api import World
from bench.api.evaluation import declarations, declared_figures
from bench.budget import compute_capped
from bench.cells import Cell
from bench.extras import require
from bench.stage_cache import StageCache, view


def before_world(plan: C.Plan, cells: list[Cell], out: Path) -> Path:
    """What the matrix can get wrong on its own, checked before ``--fresh`` deletes anything
    and before a world is built; returns the output folder, refused if it is not alignbench's."""
    check_budgets(cells, plan)
    check_claim_rows(cells, plan)
    check_declarations(plan)
    problem = tracking.check_folder(plan.matrix.report_to, out)
    if problem:
        raise C.ConfigError(problem)
    if plan.matrix.executor == "ray":  # a missing extra costs nothing
        require("ray", "the ray executor")
        check_ray(plan)
    return output.check(out)


def with_world(plan: C.Plan, cells: list[Cell], world: World, stages: StageCache) -> None:
    """What only the built world can tell, before any cell trains."""
    check_worlds(cells, world)
    check_evals(plan, world)
    check_data(cells, plan, world)
    check_compute(cells, stages)


def check_budgets(cells: list[Cell], plan: C.Plan) -> None:
    """Refuse a matrix whose cells cannot run under their budget, before anything is built or
    trained: each method's ``Config.planned_spend`` says what it will charge, so a method whose
    steps need more rollouts than the budget gives fails here in a second, not as a failed
    cell an hour into the run."""
    problems: dict[str, None] = {}  # ordered, and one line for all seeds of a cell
    for cell in cells:
        try:
            for stage in plan.chain(cell.name):  # the stages it starts from must fit too
                plan.configs[stage].planned_spend(cell.budget)
            spend = cell.config.planned_spend(cell.budget)
        except ValueError as err:
            problems[f"{cell.where}: {err}"] = None
            continue
        for unit, (need, why) in spend.items():
            cap = cell.budget.get(unit)
            if cap is not None and need > cap + 1e-9:
                problems[f"{cell.where} needs {need:g} {unit} ({why}) but budget.{unit} is "
                         f"{cap:g}; raise budget.{unit} to at least {need:g} or configure "
                         f"{cell.name} to spend less"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its budget: " + "; ".join(problems))


def check_claim_rows(cells: list[Cell], plan: C.Plan) -> None:
    """Every row a claim reads is a row this matrix makes (with its sweep point exactly as
    the report writes it), so that a typo is refused before the run, not found as a claim
    "not measured" after it."""
    rows = sorted({C.row_label(c.name, c.point) for c in cells})
    for c in plan.matrix.claims:
        for row in c.rows():
            if row not in rows:
                raise C.ConfigError(f"claim {c.id}: row {row!r} is not a row of this matrix; "
                                    f"its rows: {', '.join(rows)}")


def check_ray(plan: C.Plan) -> None:
    """What the local executor accepts and Ray cannot: a device decided on the driver for cells
    that run elsewhere, or CUDA cells that Ray reserves no GPU for."""
    m = plan.matrix
    if C.executor_device(m) == "auto":
        raise C.ConfigError('device = "auto" would be decided on the driver, not on the nodes '
                            'that run the cells; under the ray executor set device = "cpu" or '
                            '"cuda"')
    no_gpu = [n for n in plan.methods if not m.resources.of(n).num_gpus]
    if C.executor_device(m) == "cuda" and no_gpu:
        raise C.ConfigError(f'device = "cuda" but {", ".join(no_gpu)} ask for no GPU '
                            f"(resources.num_gpus = 0), so Ray would reserve none for their "
                            f"cells; set [resources] num_gpus (or [resources.method.NAME]) above 0")


def check_worlds(cells: list[Cell], world: World) -> None:
    """Each method config's own preflight against the built world
    (``MethodConfig.check_world``): one line for the first setting it cannot serve."""
    seen, train_view = set(), view(world)
    for cell in cells:
        sig = (cell.name, store.canonical(cell.method_config))
        if sig in seen:
            continue
        seen.add(sig)
        try:
            cell.config.check_world(train_view)
        except ValueError as err:
            raise C.ConfigError(f"{cell.where}: {err}") from None


def check_declarations(plan: C.Plan) -> None:
    """What each eval declares for the report (its descriptive metrics, ranking metric,
    length-control pairs, figures) fits its own metrics and the other evals' figure ids: a
    plugin's bad declaration fails here, not in the report after the run."""
    for ev, _ in plan.evals.values():
        declarations(ev)
    declared_figures(ev for ev, _ in plan.evals.values())


def check_evals(plan: C.Plan, world: World) -> None:
    """Each eval's options against the built world, where the options say what they need of
    it (``check_world``, as a method config's): a setting no cell could serve fails here, not
    in every cell after its training."""
    for name, (_, options) in plan.evals.items():
        try:
            options.check_world(world)
        except ValueError as err:
            raise C.ConfigError(f"eval.{name}: {err}") from None


def check_data(cells: list[Cell], plan: C.Plan, world: World) -> None:
    """A budget the scenario's data cannot fill is refused before any cell trains, naming
    both (``World.data_limits``: rows per budget unit, for data drawn without replacement); so
    is a method that needs paired comparisons when the preference data is unpaired."""
    prefs = world.preferences
    for cell in cells:
        units = {u for n in (*plan.chain(cell.name), cell.name)
                 for u in (plan.configs[n].spends() or ())}
        for unit, rows in world.data_limits.items():
            cap = cell.budget.get(unit)
            if unit in units and cap is not None and cap > rows:
                raise C.ConfigError(
                    f"{cell.label}: budget.{unit} is {cap:g} but the scenario's data holds "
                    f"{rows} for it (drawn without replacement); lower budget.{unit} to at "
                    f"most {rows} or give more data")
        if prefs is not None and not prefs.paired and "comparisons" in units:
            raise C.ConfigError(
                f"{cell.label}: {cell.name} trains on paired comparisons, but "
                f"scenario.options.preferences holds unpaired rows (prompt/completion/label); "
                f"give paired data (prompt/chosen/rejected) or drop {cell.name} (a method that "
                f"reads unpaired rows can train on them)")


def check_compute(cells: list[Cell], stages: StageCache) -> None:
    """The compute caps' preflight, once the world is built. A method's start stage knows its
    training tokens before anything trains (``MethodConfig.planned_tokens``, a lower bound): a
    cap below that is refused here. Every other overrun is stopped by the ledger before the step
    that would cross it (each trainer step is charged before it runs)."""
    from bench.budget import training_flops
    from bench.models import n_params
    problems: dict[str, None] = {}
    capped = [c for c in cells if compute_capped(c.budget)]
    if not capped:
        return
    base = stages.base()  # the frozen base every run loads anyway

    def count(text: str) -> int:
        return len(base.tokenizer.encode(text))

    for cell in capped:
        # every shared stage: those it trains through, and those its evals compare it with
        # (StageCache.references builds them under the cell's caps too)
        for stage in sorted(stages.plan.stage_names):
            cfg = stages.plan.configs[stage]
            planned = cfg.planned_tokens(cell.budget, stages.world.demonstrations, cell.seed,
                                         count)
            if planned is None:
                continue
            tokens, why = planned
            need = {"train_tokens": tokens, "flops": training_flops(n_params(base.model), tokens)}
            for unit, amount in need.items():
                cap = cell.budget.get(unit)
                if cap is not None and amount > cap:
                    problems[f"{cell.name}: the shared {stage.upper()} stage alone needs at least "
                             f"{amount:.4g} {unit} ({why}) but budget.{unit} is {cap:.4g}; "
                             f"raise budget.{unit} or lower budget.demonstrations"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its compute budget: " + "; ".join(problems))
