"""Reference-based localization scores of attribution / attention maps (docs/localization.md).

* :mod:`~radlens.localization.scores`   scores of one map vs its ground truth (arrays in)
* :mod:`~radlens.localization.maps`     map import (.npz/.npy/.pt), resizing, orientation
* :mod:`~radlens.localization.run`      :func:`localize` (``radlens localize``)
* :mod:`~radlens.localization.summary`  per-class summaries and paired comparisons
* :mod:`~radlens.localization.tradeoff` accuracy vs interpretability across checkpoints
  (:func:`tradeoff`, ``radlens tradeoff``)
"""
from radlens.localization.maps import MapSet, load_maps, prepare_map, resize_map
from radlens.localization.run import localize
from radlens.localization.scores import GroundTruth, ground_truth, score_columns, score_map, score_maps
from radlens.localization.summary import paired_scores, summarize_scores
from radlens.localization.tradeoff import task_auc, tradeoff, tradeoff_table

__all__ = ["GroundTruth", "MapSet", "ground_truth", "load_maps", "localize", "paired_scores", "prepare_map",
           "resize_map", "score_columns", "score_map", "score_maps", "summarize_scores", "task_auc",
           "tradeoff", "tradeoff_table"]
