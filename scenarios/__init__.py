"""The built-in scenarios, beside methods/ and evals/ and above the harness: the micro-world
(``micro``: a world with known truth, built and pretrained offline in minutes) and the real
scenario (``real``: a Hugging Face model on the user's data or TruthfulQA). Each registers
through an entry point in pyproject.toml, as a plugin's scenario does."""
