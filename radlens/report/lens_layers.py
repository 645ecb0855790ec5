"""The layer-wise part of the report's lens section (``compare --layers`` outputs): depth curves,
layer × feature-class heatmaps and the per-layer summary. Reads artifacts, never recomputes."""
from __future__ import annotations

from pathlib import Path

from radlens.report import html as H

_SUMMARY_COLS = ("layer", "task", "cka", "cka_ci_low", "cka_ci_high", "r2_pre_heldout", "r2_post_heldout",
                 "r2_post_heldout_ci_low", "r2_post_heldout_ci_high", "n_significant", "n_significant_specific")


def layers_block(ctx, arch: str, cmp_dir: Path) -> tuple[Path, str]:
    """For a layer-wise compare folder: (the folder of the layer whose single-layer figures the section
    shows — ``encoders.<arch>.layer`` when it is one of the layers, else the deepest —, the HTML of the
    layer-wise figures and table). For a single-layer folder: (``cmp_dir``, "")."""
    from radlens.io.artifacts import read_json, read_table

    idx = Path(cmp_dir) / "layers.json"
    if not idx.exists():
        return Path(cmp_dir), ""
    meta = read_json(idx)
    layers = list(meta.get("layers", []))
    want = ((ctx.config.get("encoders") or {}).get(arch) or {}).get("layer")
    main = want if want in layers else layers[-1]
    d = Path(cmp_dir)
    body = (f"<h4>Layer-wise lens: where in the {H.esc(arch)} encoder did fine-tuning move the radiomic "
            f"sensitivity?</h4><p>The lens was fitted on each of {len(layers)} layers "
            f"({H.esc(', '.join(layers))}, shallow to deep). Left: linear CKA between the pre and the fine-tuned "
            "embedding of each layer (1 = unchanged up to a rotation and a global scale) with patient-bootstrap "
            "95% CIs; right: how much of each layer the radiomics explain (held-out R²). The heatmaps give, per "
            "layer and radiomic feature class, the mean z of the change of emphasis (red: more, blue: less; "
            "numbers: features with q &lt; 0.05). "
            f"The single-layer figures above are those of layer <b>{H.esc(main)}</b>; every layer's "
            f"comparison tables are in <code>lens/{H.esc(arch)}/compare/&lt;layer&gt;/</code> (its figures too "
            "unless the study sets <code>lens.layer_figures: main</code>).</p>")
    body += H.figs(H.image(d / "layer_depth.png", f"{arch}: CKA pre vs post and held-out R² against depth"))
    body += H.figs(H.image(d / "layer_heatmap.png", f"{arch}: change per layer and feature class, per task"))
    if (d / "layer_summary.csv").exists():
        s = read_table(d / "layer_summary.csv")
        body += H.table(s[[c for c in _SUMMARY_COLS if c in s.columns]], max_rows=60)
    return d / meta.get("dirs", {}).get(main, main), body
