"""The docs' screenshots of the quickstart report, from the same recorded run as the results page.

    alignbench run quickstart --out runs/quickstart-recorded --no-progress
    python docs/analysis/results_page.py runs/quickstart-recorded
    python docs/analysis/screenshots.py runs/quickstart-recorded

It rebuilds the run's report with the installed code (``alignbench report``), opens it in
Debian's chromium at 1400 px (the width the report is laid out for) and writes
docs/quickstart-report.png (the top of the page), docs/quickstart-table.png (the comparison
table), docs/quickstart-figures.png (the first figure) and docs/quickstart-samples.png (the
sample browser). docs/screenshots.json records the run's results id (a checksum of its cells'
keys and metrics): tests/test_results_docs.py checks that it is the run docs/results.json was
made from, so the pictures never show other numbers than the tables beside them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import results_id  # noqa: E402  (the one definition of a run's identity)

WIDTH = 1400
SHOTS = {  # file -> (CSS selector of what it shows, or None for the top of the page)
    "quickstart-report.png": None,
    "quickstart-table.png": "#comparison-table",
    "quickstart-figures.png": "h2#plots + figure",
    "quickstart-samples.png": "h2#samples ~ div.samples-table",
}


def shoot(html: Path, docs: Path) -> None:
    from playwright.sync_api import sync_playwright  # the report tests' browser driver

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("screenshots.py: Debian's chromium is not installed; apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(html.as_uri())
        for name, selector in SHOTS.items():
            if selector is None:
                page.screenshot(path=str(docs / name))
            else:
                page.locator(selector).first.screenshot(path=str(docs / name))
        browser.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "results.jsonl").is_file():
        print("usage: python docs/analysis/screenshots.py OUT  (a finished quickstart output "
              "folder, the one docs/results.json was made from)", file=sys.stderr)
        return 2
    out = Path(argv[0])
    subprocess.run(["alignbench", "report", str(out)], check=True)
    shoot((out / "report.html").resolve(), DOCS)
    (DOCS / "screenshots.json").write_text(json.dumps(
        {"results_id": results_id(out), "files": sorted(SHOTS)}, indent=1) + "\n")
    print(f"wrote {', '.join(sorted(SHOTS))} and screenshots.json in {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
