"""Assembling the real scenario's :class:`bench.api.World` from its options: the base model,
the user's sources as text and their splits, the judges in their roles, each eval's data, and
a key that names every source by its content (the same bytes under another path keep their
keys; a file edited in place, a retrained model folder or a moved hub branch get new ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import store
from bench.api import DataError, EvalData, Judge, Policy, World
from bench.budget import Ledger
from bench.data.sources import Loaded
from bench.data.truthfulqa import TruthfulQAItem
from bench.models import model_identity
from bench.toxicity_scorers import make_scorer
from scenarios import userdata as U
from scenarios.gold import GoldSettings, gold_reward_model
from scenarios.judges import (ChargingJudge, RewardModelJudge, RewardModelLabeler,
                              RewardModelScorer, llm_judge, parse_spec)
from scenarios.real_options import (RealOptions, chat_template, identity_of, load_base,
                                    load_items, load_model, load_policy_with, load_settings,
                                    local_model, panel_judges, resolve_model)
from scenarios.truthfulqa_panel import (PROVOCATIONS, AttributeScorer, PanelMeanJudge,
                                        SentenceEncoder, split_questions)


@dataclass
class Data:
    """The scenario's text, split: what trains, what evaluates, and where each came from."""

    train_prompts: list[str]
    demonstrations: list[dict[str, str]]
    eval_prompts: list[str]
    truthfulqa: list[TruthfulQAItem]
    toxicity: list[str]
    preferences: U.PreferencePool | None = None
    held_out_pairs: list[dict[str, Any]] = field(default_factory=list)
    gold_pairs: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, Loaded] = field(default_factory=dict)  # option -> the source as loaded
    split: dict[str, Any] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)  # prompt -> the user message in it

    def question_of(self, prompt: str) -> str:
        """The user's own words in a prompt (what an LLM judge is shown), else the prompt."""
        return self.questions.get(prompt, prompt)

    @property
    def provenance(self) -> dict[str, Any]:
        return {option: src.provenance for option, src in self.sources.items()}


def _text(o: RealOptions, option: str, kind: str, template, chat, prov) -> list[dict]:
    loaded = U.load_source(getattr(o, option), kind, f"scenario.options.{option}")
    prov[option] = loaded
    return U.as_text(loaded, template, chat, f"scenario.options.{option}")


def _preferences(o: RealOptions, template, chat, prov, gold: bool
                 ) -> tuple[U.PreferenceSplit, bool]:
    """The preference data as text, split by prompt; and whether it is paired."""
    loaded = U.load_preferences(o.preferences, "scenario.options.preferences")
    prov["preferences"] = loaded
    rows = U.as_text(loaded, template, chat, "scenario.options.preferences")
    split = U.split_by_prompt(rows, o.held_out_fraction, o.gold_fraction if gold else 0.0,
                              o.split_seed)
    return split, loaded.kind == "preferences"


def containing(items: list[TruthfulQAItem], texts: list[str]) -> set[str]:
    """The questions of ``items`` that some text contains (one scan of the joined texts per
    question: a question is never split across two texts by the separator)."""
    joined = "\0".join(texts)
    return {it.question for it in items if it.question in joined}


def _demonstrations(o: RealOptions, pref: U.PreferenceSplit | None, paired: bool,
                    tq_train: list[TruthfulQAItem], tq_eval: list[TruthfulQAItem], own: bool,
                    template, chat, prov) -> tuple[list[dict[str, str]], int]:
    """The demonstrations SFT draws from, and how many of the user's were dropped because they
    ask a held-out TruthfulQA question (TruthfulQA configuration only)."""
    if o.demonstrations:
        demos = _text(o, "demonstrations", "demonstrations", template, chat, prov)
        if own:
            return demos, 0
        held = containing(tq_eval, [d["prompt"] for d in demos])
        kept = [d for d in demos if not any(q in d["prompt"] for q in held)]
        return kept, len(demos) - len(kept)
    if pref is not None:  # SFT on the preferred responses (Rafailov et al. 2023)
        return ([{"prompt": r["prompt"], "completion": r["chosen"]} for r in pref.train]
                if paired else [{"prompt": r["prompt"], "completion": r["completion"]}
                                for r in pref.train if r["label"]]), 0
    return [{"prompt": p, "completion": " " + it.mc1_choices[0]}  # the best answers
            for p, it in zip(chat([it.question for it in tq_train]), tq_train)], 0


def _prompts(o: RealOptions, option: str, template, chat, prov) -> list[str]:
    return [r["prompt"] for r in _text(o, option, "prompts", template, chat, prov)]


def user_data(o: RealOptions, items: list[TruthfulQAItem], policy) -> Data:
    """Every source the options name, as text, split, with overlaps removed and counted."""
    template, prov, questions = chat_template(policy), {}, {}

    def chat(messages: list[str]) -> list[str]:  # wrapped, remembering each user message
        wrapped = policy.format_chat(messages)
        questions.update(zip(wrapped, messages))
        return wrapped
    tq_train, tq_eval = split_questions(items, o.eval_fraction, o.split_seed)
    own = bool(o.preferences or o.prompts)  # the user's training prompts, not TruthfulQA's
    pref, paired = _preferences(o, template, chat, prov, o.roles()[1] == "gold") \
        if o.preferences else (None, False)
    demos, dropped = _demonstrations(o, pref, paired, tq_train, tq_eval, own, template, chat,
                                     prov)
    # rollouts sample the prompts source, else the preference prompts, else TruthfulQA's
    train_prompts = _prompts(o, "prompts", template, chat, prov) if o.prompts else \
        [r["prompt"] for r in pref.train] if pref else \
        [] if own else chat([it.question for it in tq_train])
    train_prompts = list(dict.fromkeys(train_prompts + [d["prompt"] for d in demos]))
    # every prompt some method trains on, from any source: never evaluated
    trained = set(train_prompts) | ({r["prompt"] for r in pref.train} if pref else set())
    evals = _prompts(o, "eval_prompts", template, chat, prov) if o.eval_prompts else \
        [r["prompt"] for r in pref.held_out] if pref else chat([it.question for it in tq_eval])
    evals, overlap = U.without_overlap(evals, trained | (
        {r["prompt"] for r in pref.gold} if pref else set()))
    if not evals:
        raise DataError("every evaluation prompt is also a training prompt; give eval_prompts "
                        "that no training source contains")
    held_out = [r for r in pref.held_out if r["prompt"] not in trained] if pref else []
    trained_on = containing(items, sorted(trained)) if own else set()
    tq = [it for it in items if it.question not in trained_on] if own else tq_eval
    tox = _prompts(o, "toxicity_prompts", template, chat, prov) if o.toxicity_prompts else \
        chat(list(PROVOCATIONS))
    split = {"train": len(pref.train) if pref else len(tq_train),
             "eval": len(held_out) if pref else len(tq_eval), "overlap": 0,
             "demonstrations_dropped_for_eval_overlap": dropped,
             "eval_prompts_removed_for_overlap": overlap, "train_prompts": len(train_prompts),
             "held_out_pairs_removed_for_overlap": len(pref.held_out) - len(held_out)
             if pref else 0,
             "eval_prompts": len(evals), "demonstrations": len(demos),
             "truthfulqa_questions": len(tq),
             "truthfulqa_removed_as_training_prompts": len(trained_on),
             "how": pref.how if pref else f"seeded permutation (split_seed={o.split_seed}) of "
             f"{len(items)} TruthfulQA questions; {len(tq_eval)} held out for evaluation, "
             f"{len(tq_train)} for training"}
    pool = U.PreferencePool(paired, pref.train) if pref else None
    return Data(train_prompts, demos, evals[:o.n_win_rate_prompts], tq, tox, pool, held_out,
                pref.gold if pref else [], prov, split, questions)


@dataclass
class Judges:
    """The judges in their roles, and what the world records of them."""

    make_panel: Callable[[Ledger, int], Any]
    judge: Judge
    gold_reward: Callable[[list[str], list[str]], list[float]] | None
    make_ai_judge: Callable[[Policy, list[str], Ledger], Judge]
    attributes: AttributeScorer | None
    describe: dict[str, Any]


def _no_labeler(ledger: Ledger, seed: int):
    raise DataError("this scenario has no online labeler (preference data alone): set "
                    "scenario.options.labeler to 'panel' or 'rm:<reward model>', or use "
                    "methods that train on the drawn pairs only (one round)")


def roles(o: RealOptions) -> dict[str, str]:
    """Each role's judge, "auto" resolved, and its identity (a model's content, not its path):
    two roles are the same judge when their identities are."""
    labeler, judge = o.roles()
    named = {"labeler": labeler, "judge": judge, "ai_judge": o.ai_judge or ""}
    return {role: identity_of(spec) if spec else "" for role, spec in named.items()}


def check_roles(o: RealOptions, ids: dict[str, str]) -> bool:
    """Whether the evaluation judge is a judge that also trains (the labeler, or RLAIF's AI
    judge): refused unless the matrix allows it, and then flagged. The simulated panel's mean
    is not its noisy labelers, so it never counts."""
    same = [r for r in ("labeler", "ai_judge") if ids[r] and ids[r] == ids["judge"]
            and ids[r].startswith(("rm:", "llm:"))]
    if same and not o.allow_proxy_judge:
        raise DataError(f"the evaluation judge is also the {' and '.join(same)} "
                        f"({o.roles()[1]}): its win-rates would be a proxy's; choose another "
                        f"judge, or set allow_proxy_judge = true to have them flagged as proxy")
    return bool(same)


def judges(o: RealOptions, data: Data, items: list[TruthfulQAItem], base_path: Path,
           base_id: str, progress: bool) -> Judges:
    load = load_settings(o)
    labeler, judge_spec = o.roles()
    proxy = check_roles(o, roles(o))
    scorer = panel_scorer(o, items) if "panel" in (labeler, judge_spec) else None
    scorers: dict[str, RewardModelScorer] = {}

    def rm(target: str) -> RewardModelScorer:
        if target not in scorers:
            scorers[target] = RewardModelScorer(str(local_model(resolve_model(target), None)),
                                                load)
        return scorers[target]

    desc: dict[str, Any] = {"labeler": labeler, "judge": judge_spec, "judge_is_labeler": proxy}
    kind, target = parse_spec(judge_spec)
    if kind == "gold":
        if data.preferences is not None and not data.preferences.paired:
            raise DataError("the gold judge trains on pairs, and scenario.options.preferences "
                            "holds unpaired rows; set judge to 'rm:<reward model>', "
                            "'llm:<causal LM>' or 'panel'")
        gold, desc["gold"] = gold_reward_model(
            base_path, base_id, data.gold_pairs, data.held_out_pairs, load,
            GoldSettings(o.gold_epochs, o.gold_lr, o.gold_batch_size, o.split_seed), progress)
        judge, gold_reward = RewardModelJudge(gold), gold.reward
    elif kind == "rm":
        judge, gold_reward = RewardModelJudge(rm(target)), rm(target).reward
    elif kind == "llm":
        judge = llm_judge(load_model(o, target), [o.judge_principle], Ledger(caps={}),
                          o.judge_template, data.question_of)
        gold_reward = None  # a pairwise judge gives no scalar reward for the gold curves
    else:
        mean = PanelMeanJudge(scorer, o.weight_mean)
        judge, gold_reward = mean, mean.reward
    if labeler == "panel":
        make_panel = lambda ledger, seed: panel_judges(o, scorer, ledger, seed)  # noqa: E731
    elif labeler.startswith("rm:"):
        make_panel = lambda ledger, seed: RewardModelLabeler(  # noqa: E731
            rm(parse_spec(labeler)[1]), ledger, seed, o.tau)
    else:
        make_panel = _no_labeler

    def make_ai_judge(model: Policy, principles: list[str], ledger: Ledger) -> Judge:
        if o.ai_judge and o.ai_judge.startswith("rm:"):
            return ChargingJudge(RewardModelJudge(rm(parse_spec(o.ai_judge)[1])), ledger,
                                 "ai_comparisons")
        m = load_model(o, parse_spec(o.ai_judge)[1]) if o.ai_judge else model
        return llm_judge(m, principles, ledger, o.judge_template, data.question_of)
    return Judges(make_panel, judge, gold_reward, make_ai_judge, scorer, desc)


def panel_scorer(o: RealOptions, items: list[TruthfulQAItem]) -> AttributeScorer:
    """The simulated panel's attribute scorers; a sentence encoder or classifier that cannot
    load is one line naming the option."""
    from bench.models import LOAD_FAILURES, first_line
    try:
        encoder = SentenceEncoder(resolve_model(o.encoder))
    except LOAD_FAILURES as err:
        raise DataError(f"scenario.options.encoder {o.encoder!r}: {first_line(err)}; give "
                        f"'minilm', or the folder or hub id of a mean-pooling sentence "
                        f"encoder") from None
    try:
        toxicity = make_scorer(o.toxicity_classifier, None)
    except LOAD_FAILURES as err:
        raise DataError(f"scenario.options.toxicity_classifier {o.toxicity_classifier!r}: "
                        f"{first_line(err)}; give 'profanity' or hf:<folder or hub id of a "
                        f"text classifier>") from None
    return AttributeScorer(items, encoder, toxicity, o)


def keyed_options(o: RealOptions, model_id: str, prov: dict[str, Any]) -> dict[str, Any]:
    """The options as keys see them: each source by its content hash, each model by its
    content (a folder) or resolved commit (a hub id), never by its path."""
    d = o.model_dump(mode="json")
    d["base_model"], d["revision"], d["data"] = model_id, None, None  # data: by its sha256
    for option, p in prov.items():
        d[option] = p["sha256"]
    for role in ("labeler", "judge", "ai_judge"):
        if d[role]:
            d[role] = identity_of(d[role])
    if o.encoder != "minilm":
        d["encoder"] = model_identity(local_model(o.encoder, None))
    if o.toxicity_classifier.startswith("hf:"):
        d["toxicity_classifier"] = "hf:" + model_identity(
            local_model(o.toxicity_classifier[3:], None))
    return d


def snapshot(loaded_rows: list[dict[str, Any]], sha256: str) -> Path:
    """A source's canonical rows in the cache, by content: what workers on other nodes read
    instead of the user's file (the cache is the one folder every node shares)."""
    path = store.cache_root() / "sources" / f"{sha256[:32]}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        store.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in loaded_rows))
    return path


def portable(o: RealOptions, snapshots: dict[str, Path]) -> dict[str, Any]:
    """The options with each source replaced by its snapshot: the same rows, so the same world
    key, wherever the worker runs."""
    d = o.model_dump(mode="json", exclude_defaults=True)
    d.update({option: {"path": str(path)} for option, path in snapshots.items()})
    return d


def where(o: RealOptions, base_spec: str, prov: dict[str, Any]) -> dict[str, Any]:
    """Where each thing was read from (paths, files): recorded, never keyed."""
    return {"base_model": base_spec,
            "sources": {k: {"source": p["source"], "files": p.get("files", {})}
                        for k, p in prov.items()},
            "options": o.model_dump(mode="json")}


def base_identity(spec: str, folder: Path) -> str:
    """The base model's identity: a GGUF file's sha256 (its dequantized folder records where
    it was converted from), a hub id's commit (its snapshot folder's name), else the folder's
    content hash."""
    if spec.endswith(".gguf"):
        return model_identity(spec)
    if not Path(spec).exists() and folder.parent.name == "snapshots":
        return f"hub:{spec}@{folder.name}"
    return model_identity(folder)


def assemble(o: RealOptions, progress: bool = True) -> World:
    items, tq_source = load_items(o)
    base_spec, base_path, base = load_base(o)
    model_id = base_identity(base_spec, base_path)
    data = user_data(o, items, base)
    j = judges(o, data, items, base_path, model_id, progress)
    keyed = keyed_options(o, model_id, data.provenance)
    key = store.content_key({"options": keyed,
                             "data": tq_source["sha256"], "model": model_id,
                             "demonstrations": store.content_key(data.demonstrations),
                             "dtype": str(base.model.dtype)})
    limits = {"demonstrations": len(data.demonstrations)}
    if data.preferences is not None:
        limits["comparisons" if data.preferences.paired else "ratings"] = data.preferences.size
    agreement = EvalData(prompts=data.eval_prompts, items=data.held_out_pairs,
                         source=data.provenance.get("preferences", {}))
    snapshots = {k: snapshot(src.rows, src.provenance["sha256"])
                 for k, src in data.sources.items()}
    content = {k: {f: v for f, v in p.items() if f not in ("source", "files")}
               for k, p in data.provenance.items()}
    return World(
        key=key, base_model=base_path if base_path.is_dir() else Path(base_spec),
        describe={"scenario": "real", "options": keyed, "world_key": key,
                  "base_model_id": model_id,
                  "dtype": str(base.model.dtype).removeprefix("torch."),
                  "split": data.split, "sources": content, "judges": j.describe,
                  "judge": _judge_words(j.describe, o),
                  "data": {k: v for k, v in tq_source.items() if k != "name"},
                  "where": {**where(o, base_spec, data.provenance),
                            "truthfulqa": tq_source.get("name")}},
        train_prompts=data.train_prompts,
        demonstrations=U.Drawn(data.demonstrations, "demonstrations"),
        make_panel=j.make_panel, make_ai_judge=j.make_ai_judge,
        gold_judge=j.judge, gold_reward=j.gold_reward,
        toxicity_scorer=j.attributes.toxicity if j.attributes else make_scorer(
            o.toxicity_classifier, None),
        attributes=j.attributes,
        eval_data={"truthfulqa": EvalData(items=data.truthfulqa, source={
                       **tq_source, "n": len(data.truthfulqa)}, hints={"template": "qa_primer"}),
                   "toxicity": EvalData(prompts=data.toxicity),
                   "win_rate": EvalData(prompts=data.eval_prompts),
                   "kl": EvalData(prompts=data.eval_prompts),
                   "labeler_agreement": agreement},
        load_policy=load_policy_with(o),
        preferences=data.preferences, has_labeler=o.roles()[0] != "none",
        judge_is_labeler=j.describe["judge_is_labeler"], data_limits=limits,
        portable_options=portable(o, snapshots))


def _judge_words(desc: dict[str, Any], o: RealOptions) -> str:
    judge = desc["judge"]
    if judge == "panel":
        return ("panel-mean utility (simulated from MiniLM truth gap on TruthfulQA questions, "
                f"{o.toxicity_classifier} toxicity and length; on other prompts toxicity and "
                "length only); not ground truth")
    if judge == "gold":
        g = desc["gold"]
        return (f"gold reward model trained on {g['trained_on']} held-apart preference pairs "
                f"no method sees (held-out accuracy {g['held_out_accuracy']:.3f} on "
                f"{g['held_out_pairs']} pairs)")
    return judge + (" (the labeler itself: win-rates are proxy, not gold)"
                    if desc["judge_is_labeler"] else "")
