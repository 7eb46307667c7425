"""Datasets that scenarios and evals share, normalized once at load into one record type each
(``bench.data.truthfulqa.TruthfulQAItem``). Nothing here imports an eval or a method."""
