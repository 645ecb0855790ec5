#!/usr/bin/env bash
# Regenerate figures/ and the README's generated blocks from a default `radlens demo` run.
#   scripts/make_figures.sh [DEMO_DIR]      (default: radlens-demo; reused when already complete)
# Optional: a headless Chromium on PATH (`chromium`) adds figures/report_screenshot.png.
# No number in README.md's demo block or benchmark table is typed by hand: scripts/readme.py
# copies the figures and the run's demo.json + findings.json into figures/ (figures/demo.json)
# and rewrites both blocks from it and from benchmarks/results/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="${1:-radlens-demo}"
export RADLENS_PROGRESS="${RADLENS_PROGRESS:-0}"
radlens demo --out "$DEMO"
radlens report "$DEMO" >/dev/null   # refreshes findings.json even when every stage was cached
if command -v chromium >/dev/null 2>&1; then
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --no-first-run --hide-scrollbars --screenshot="$(cd "$DEMO" && pwd)/report_screenshot.png" \
    --window-size=1400,2000 "file://$(cd "$DEMO" && pwd)/report.html" >/dev/null 2>&1 || true
fi
python scripts/readme.py "$DEMO"
python scripts/readme.py check
