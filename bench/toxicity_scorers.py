"""Local toxicity scorers (:class:`bench.api.ToxicityScorer`): the real scenario's panel reads
them and the toxicity eval scores samples with them. No network."""

from __future__ import annotations

from bench.api import ToxicityScorer


class ProfanityCheckScorer:
    """The offline linear classifier shipped by ``alt-profanity-check`` (probability of
    profanity/offensiveness). A real-text scorer that needs no network."""

    name = "alt-profanity-check"

    def __init__(self) -> None:
        from bench.extras import require
        self._predict = require("profanity_check", "the alt-profanity-check toxicity scorer") \
            .predict_prob

    def score(self, texts: list[str]) -> list[float]:
        return [float(x) for x in self._predict(list(texts))] if texts else []


class HFClassifierScorer:
    """A Hugging Face text-classification model by hub id or folder; the score is the
    probability of the label named ``toxic_label`` (default: the first label containing
    'toxic')."""

    def __init__(self, spec: str, toxic_label: str | None = None) -> None:
        from transformers import pipeline
        self.name = f"hf:{spec}"
        self.pipe = pipeline("text-classification", model=spec, top_k=None)
        self.toxic_label = toxic_label

    def score(self, texts: list[str]) -> list[float]:
        out = []
        for scores in self.pipe(list(texts), truncation=True):
            label = self.toxic_label or next((s["label"] for s in scores
                                              if "toxic" in s["label"].lower()), scores[0]["label"])
            out.append(float(next(s["score"] for s in scores if s["label"] == label)))
        return out


def make_scorer(spec: str, scenario_scorer: ToxicityScorer | None) -> ToxicityScorer:
    """``"scenario"`` (the scenario's own scorer), ``"profanity"`` or ``"hf:<id or folder>"``."""
    if spec == "scenario":
        if scenario_scorer is None:
            raise ValueError("this scenario has no toxicity scorer; set eval.toxicity.scorer to "
                             "'profanity' or 'hf:<model id or folder>'")
        return scenario_scorer
    if spec == "profanity":
        return ProfanityCheckScorer()
    if spec.startswith("hf:"):
        return HFClassifierScorer(spec[3:])
    raise ValueError(f"unknown toxicity scorer {spec!r}; use 'scenario', 'profanity' or "
                     f"'hf:<model id or folder>'")
