"""The real scenario's options (:class:`RealOptions`) and how it loads what they name: the
base model and judges in the options' precision, and the TruthfulQA questions. The scenario
itself is :mod:`scenarios.real`; the world it builds, :mod:`scenarios.real_world`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator

from bench.api import ScenarioOptions
from bench.budget import Ledger
from bench.data.sources import SourceSpec
from bench.data.truthfulqa import TruthfulQAItem, load_packaged, load_with_source
from bench.models import (ModelLoadError, first_line, gguf_as_safetensors, load_hf,
                          looks_like_path, model_identity, torch_dtype)
from bench.policy import HFPolicy
from scenarios import userdata as U
from scenarios import world as W
from scenarios.judges import (DEFAULT_PRINCIPLE, DEFAULT_TEMPLATE, JUDGE_SPEC,
                              LoadSettings, check_template, parse_spec)
from scenarios.truthfulqa_panel import AttributeScorer, real_panel

Source = str | SourceSpec
# a labeler weight: beyond +-50 utility units a Bradley-Terry label is certain whatever tau is
Weight = Annotated[float, Field(ge=-50.0, le=50.0)]
Spread = Annotated[float, Field(ge=0.0, le=50.0)]


class RealOptions(ScenarioOptions):
    # the model
    base_model: str = Field("smollm2", description="'smollm2' (the offline GGUF asset), a hub "
                            "id, a model folder or a .gguf file")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="precision of every model loaded: auto is bfloat16 on a CUDA "
        "device that supports it, float32 elsewhere")
    revision: str | None = Field(None, description="hub revision of base_model (commit, tag "
                                 "or branch); cell keys name the commit it resolves to")
    trust_remote_code: bool = Field(False, description="allow the models' own Python code")
    allow_pickle: bool = Field(False, description="allow .bin (pickle) weights")
    # the data: a source is a path or hub id, or a table {path, name, split, revision, columns}
    demonstrations: Source | None = Field(
        None, description="SFT data: prompt/completion or language-modeling rows, standard or "
        "conversational. Default: the chosen responses of the preference training split, else "
        "the best answers to the TruthfulQA training questions")
    preferences: Source | None = Field(
        None, description="preference data: prompt/chosen/rejected (explicit or implicit "
        "prompt, standard or conversational) or unpaired prompt/completion/label rows (KTO). "
        "The comparisons (unpaired: ratings) budget draws from its training split")
    prompts: Source | None = Field(
        None, description="prompt-only rows for online methods' rollouts. Default: the "
        "prompts of the preference training split and the demonstrations")
    eval_prompts: Source | None = Field(
        None, description="prompts for win-rate, KL and labeler agreement; any that is also "
        "a training prompt is removed, with a count. Default: the held-out preference prompts, "
        "else the held-out TruthfulQA questions")
    toxicity_prompts: Source | None = Field(
        None, description="prompts for the toxicity eval (RealToxicityPrompts' format, a "
        "jsonl of {prompt} or a .txt of lines). Default: a built-in set of provocations")
    data: str | None = Field(None, description="TruthfulQA CSV or multiple_choice JSON/parquet; "
                             "default: $ALIGNBENCH_TRUTHFULQA, else the copy alignbench ships")
    # splits
    eval_fraction: float = Field(0.5, gt=0, lt=1, description="TruthfulQA questions held out "
                                 "for evaluation (TruthfulQA configuration)")
    held_out_fraction: float = Field(0.1, gt=0, lt=1, description="preference prompts held out "
                                     "for evaluation (win-rate prompts, agreement pairs)")
    gold_fraction: float = Field(0.25, ge=0, lt=1, description="preference prompts set aside to "
                                 "train the gold reward model (judge = 'gold')")
    split_seed: int = Field(0, ge=0, description="seed of every train/eval split")
    n_win_rate_prompts: int = Field(32, ge=1, description="evaluation prompts for win-rate, KL "
                                    "and labeler agreement")
    # the judges: "panel", "gold", "none", "rm:<model>", "llm:<model>"
    labeler: str = Field("auto", pattern=rf"^(auto|{JUDGE_SPEC})$", description="who labels "
                         "online comparisons: 'panel' (simulated), 'rm:<reward model>' or "
                         "'none'; auto: panel, or none when preferences are given")
    judge: str = Field("auto", pattern=rf"^(auto|{JUDGE_SPEC})$", description="the evaluation "
                       "judge: 'gold' (a reward model trained on a preference split no method "
                       "sees), 'rm:<reward model>', 'llm:<causal LM>' or 'panel'; auto: gold "
                       "when paired preferences are given, else panel")
    ai_judge: str | None = Field(None, pattern=r"^(rm|llm):.+$", description="RLAIF's judge: "
                                 "'llm:<causal LM>' or 'rm:<reward model>'; default: the model "
                                 "RLAIF hands over (the base model) as an LLM judge")
    allow_proxy_judge: bool = Field(False, description="let the evaluation judge be the online "
                                    "labeler itself (win-rates are then flagged as proxy)")
    judge_template: str = Field(DEFAULT_TEMPLATE, description="the LLM judge's question, with "
                                "{principle}, {question}, {a} and {b}")
    judge_principle: str = Field(DEFAULT_PRINCIPLE, description="the evaluation LLM judge's "
                                 "principle")
    gold_epochs: float = Field(1.0, gt=0, description="the gold reward model's passes over its "
                               "pairs (InstructGPT's reward model: 1)")
    gold_lr: float = Field(2e-5, gt=0, description="the gold reward model's learning rate")
    gold_batch_size: int = Field(8, ge=1, description="the gold reward model's batch size")
    # the simulated panel (TruthfulQA configuration, or labeler/judge = 'panel')
    encoder: str = Field("minilm", description="'minilm' (offline asset), hub id or folder of "
                         "a sentence encoder (mean pooling)")
    toxicity_classifier: str = Field("profanity", description="'profanity' "
                                     "(alt-profanity-check) or hf:<id or folder>")
    truth_scale: float = Field(5.0, gt=0, description="utility units per unit of similarity gap")
    max_words: int = Field(60, ge=1, description="length feature saturates here")
    panel_size: int = Field(16, ge=2, description="simulated labelers in the panel")
    tau: float = Field(1.0, gt=0, description="Bradley-Terry temperature of the labelers")
    weight_mean: tuple[Weight, Weight, Weight] = Field(
        (2.0, 1.5, 0.0), description="mean weights (truth, clean, length)")
    weight_sd: tuple[Spread, Spread, Spread] = Field((0.6, 0.5, 0.5),
                                                     description="spread of labeler weights")

    @model_validator(mode="after")
    def _judges(self):
        check_template(self.judge_template)
        if self.held_out_fraction + self.gold_fraction >= 1:
            raise ValueError("held_out_fraction + gold_fraction must leave some preference "
                             "prompts to train on (their sum is below 1)")
        labeler, judge = self.roles()
        if judge == "gold" and self.gold_fraction == 0:
            raise ValueError("judge = 'gold' trains on the gold_fraction of the preference "
                             "prompts, which is 0; raise gold_fraction or choose another judge")
        if judge == "gold" and not self.preferences:
            raise ValueError("judge = 'gold' trains on a split of the preference data: set "
                             "preferences, or choose another judge")
        if labeler == judge and labeler.startswith(("rm:", "llm:")) and not \
                self.allow_proxy_judge:
            raise ValueError(f"the evaluation judge is the labeler ({judge}): its win-rates "
                             f"would be the proxy's own; choose another judge, or set "
                             f"allow_proxy_judge = true to have them flagged as proxy")
        if labeler.startswith("llm:") or labeler == "gold":
            raise ValueError(f"labeler {labeler!r}: online labels come from 'panel', "
                             f"'rm:<reward model>' or 'none' (an LLM judges through "
                             f"RLAIF's ai_judge; the gold judge only evaluates)")
        return self

    def roles(self) -> tuple[str, str]:
        """(labeler, judge) with "auto" resolved."""
        labeler = self.labeler if self.labeler != "auto" else \
            "none" if self.preferences else "panel"
        judge = self.judge if self.judge != "auto" else "gold" if self.preferences else "panel"
        return labeler, judge


def resolve_model(spec: str) -> str:
    if spec in ("smollm2", "minilm"):
        from bench.assets import fetch
        return str(fetch(spec))
    return spec


def load_items(o: RealOptions) -> tuple[list[TruthfulQAItem], dict[str, Any]]:
    path = o.data or os.environ.get("ALIGNBENCH_TRUTHFULQA")
    return load_with_source(path) if path else load_packaged()


def load_settings(o: RealOptions) -> LoadSettings:
    """How every model of the world loads. The scenario loads before the matrix's device is
    applied, so "auto" precision is resolved once here, as device = "auto" is (CUDA when one
    is visible), and that one precision serves every load: policy, references, judges."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = str(torch_dtype(o.dtype, device)).removeprefix("torch.")
    return LoadSettings(dtype, device, o.trust_remote_code, o.allow_pickle)


def local_model(spec: str, revision: str | None) -> Path:
    """A model as a local folder: a folder as it is, a ``.gguf`` file dequantized once into
    the cache, a hub id at ``revision`` as its snapshot in the hub cache (downloaded when
    the hub is reachable), so that every later load (each stage, the reward and value models,
    the gold judge) reads the very weights the key names."""
    path = Path(spec)
    if spec.endswith(".gguf"):
        return gguf_as_safetensors(path)
    if path.is_dir() or looks_like_path(spec):
        return path
    import huggingface_hub as hf
    try:
        return Path(hf.snapshot_download(spec, revision=revision))
    except Exception as err:  # offline and not cached, a wrong id, a refused repository
        raise ModelLoadError(f"cannot get model {spec!r} at revision {revision or 'main'} "
                             f"({first_line(err)}); check the hub id and revision, connect "
                             f"once, or give a local folder") from None


def load_model(o: RealOptions, spec: str, name: str | None = None) -> HFPolicy:
    """A causal LM the world uses (base, stage, LLM judge) with the scenario's precision and
    opt-ins."""
    load = load_settings(o)
    return load_hf(local_model(resolve_model(spec), None), name=name, dtype=load.dtype,
                   trust_remote_code=o.trust_remote_code, allow_pickle=o.allow_pickle)


def load_base(o: RealOptions) -> tuple[str, Path, HFPolicy]:
    """(the spec as given, the local folder its weights load from, the base policy)."""
    base_spec = resolve_model(o.base_model)
    base_path = local_model(base_spec, o.revision)
    return base_spec, base_path, load_model(o, str(base_path), name=base_path.name)


def chat_template(policy: HFPolicy) -> U.Template:
    tok = policy.tokenizer
    if not getattr(tok, "chat_template", None):
        return None
    return lambda messages, add_generation_prompt: tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def load_policy_with(o: RealOptions):
    """``World.load_policy``: a stage's or the base's folder, in the world's precision."""
    return lambda p: load_model(o, str(p), name=Path(p).name)


def identity_of(spec: str) -> str:
    """A judge's identity for keys and for telling roles apart: the model's content, not its
    path ("rm:./rm" and "rm:rm" are one judge)."""
    kind, target = parse_spec(spec)
    if kind in ("rm", "llm"):
        return f"{kind}:{model_identity(local_model(resolve_model(target), None))}"
    return spec


def panel_judges(o: RealOptions, scorer: AttributeScorer, ledger: Ledger, seed: int):
    spec = W.PanelSpec(weight_mean=o.weight_mean, weight_sd=o.weight_sd, tau=o.tau,
                       n_labelers=o.panel_size)
    return real_panel(scorer, spec, ledger, seed, o.split_seed)
