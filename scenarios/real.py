"""The real scenario: a Hugging Face causal LM and data the user names, every part a source.

* **Models**: the base model (hub id, folder or GGUF) with ``dtype``, ``revision``,
  ``trust_remote_code`` and ``allow_pickle`` honored by every load: the policy each method
  trains, the frozen references, the reward and value models (they start from the same weights
  in the same precision), the judges.
* **Data**, through the ``datasets`` library in TRL's formats (``bench.data.sources``):
  ``demonstrations`` for SFT, ``preferences`` whose pairs the ``comparisons`` budget draws
  without replacement (every method that consumes comparisons trains on the same drawn pairs),
  ``prompts`` for online methods' rollouts, ``eval_prompts`` for win-rate, KL and labeler
  agreement, ``toxicity_prompts`` (RealToxicityPrompts' format or plain lines).
* **Judges**, with labeling and evaluation apart (``scenarios.judges``): ``labeler``
  labels online comparisons, ``judge`` evaluates, ``ai_judge`` is RLAIF's.

With none of the data sources set, the scenario is its TruthfulQA configuration
(``scenarios.truthfulqa_panel``): TruthfulQA questions split into training prompts and
held-out items, the best answers as demonstrations, a simulated panel as labeler and its
noise-free mean as judge. TruthfulQA itself is always evaluated zero-shot, on every question no
training prompt contains.
"""

from __future__ import annotations

from pathlib import Path

from bench.api import World
from scenarios.real_options import RealOptions

__all__ = ["Real", "RealOptions"]


class Real:
    name = "real"
    description = "a Hugging Face causal LM on your own data (demonstrations, preferences, " \
                  "prompts) or on TruthfulQA, judged by a gold reward model, a reward model, " \
                  "an LLM judge or a simulated panel"
    Options = RealOptions
    profile = "real"  # methods' defaults for pretrained models (MethodConfig.profiles)

    def build(self, options: RealOptions | dict, cache_dir: Path, progress: bool = True) -> World:
        from scenarios.real_world import assemble  # imported once a world is built
        o = options if isinstance(options, RealOptions) else RealOptions.model_validate(options)
        return assemble(o, progress)
