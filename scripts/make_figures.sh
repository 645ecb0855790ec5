#!/usr/bin/env bash
# Regenerate figures/ (the README's figures) from a full `radlens demo` run.
#   scripts/make_figures.sh [DEMO_DIR]      (default: radlens-demo; reused when already complete)
# Optional: a headless Chromium on PATH (`chromium`) adds figures/report_screenshot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="${1:-radlens-demo}"
export RADLENS_PROGRESS="${RADLENS_PROGRESS:-0}"
radlens demo --out "$DEMO"
mkdir -p figures
copy() {  # copy SRC DEST_NAME (PNG + SVG when present)
  local src="$1" dst="$2"
  if [ -f "$src" ]; then
    cp "$src" "figures/$dst.png"
    [ -f "${src%.png}.svg" ] && cp "${src%.png}.svg" "figures/$dst.svg"
    echo "figures/$dst.png"
  else
    echo "missing: $src (that stage did not run; see $DEMO/report.html)" >&2
  fi
}
copy "$DEMO/figures/training_summary.png"            demo_training
copy "$DEMO/figures/planted_enrichment.png"          planted_enrichment
copy "$DEMO/figures/tradeoff.png"                    tradeoff
for arch in cnn vit; do
  copy "$DEMO/lens/$arch/compare/heatmap.png"        "lens_heatmap_$arch"
  copy "$DEMO/lens/$arch/compare/top_k_bars.png"     "lens_top_features_$arch"
  copy "$DEMO/lens/$arch/compare/class_totals.png"   "lens_class_totals_$arch"
  copy "$DEMO/probe/$arch/probe_panel.png"           "probe_panel_$arch"
  copy "$DEMO/probe/$arch/probe_pre_post.png"        "probe_pre_post_$arch"
  copy "$DEMO/cam/figures/cam_overlays_maps_${arch}_task_texture.png" "cam_overlays_${arch}_task_texture"
done
copy "$DEMO/cam/figures/cam_drift_distributions.png" cam_drift_distributions
copy "$DEMO/cam/figures/cam_drift_rankings.png"      cam_drift_rankings
if command -v chromium >/dev/null 2>&1; then
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
    --screenshot="$PWD/figures/report_screenshot.png" --window-size=1400,4000 \
    "file://$(cd "$DEMO" && pwd)/report.html" >/dev/null 2>&1 && echo figures/report_screenshot.png
fi
