"""Quality metrics of layouts and of rendered maps.

Layouts: neighbourhoods kept, overlap. Maps: the paper's blur/resize errors and
connected regions.
"""

# --- layout quality (topojax/metrics/layout_quality.py) ---
from topojax.metrics.layout_quality import (
    continuity,
    distance_spearman,
    ground_truth_recall,
    knn_recall,
    layout_report,
    overlap,
    trustworthiness,
)

# --- map quality (topojax/metrics/map_quality.py) ---
from topojax.metrics.map_quality import (
    ComponentStats,
    auc,
    blur_curve,
    components,
    evaluate_maps,
    resize_curve,
    to_rgb,
)

__all__: list[str] = []
__all__ += [  # layout quality
    "continuity",
    "distance_spearman",
    "ground_truth_recall",
    "knn_recall",
    "layout_report",
    "overlap",
    "trustworthiness",
]
__all__ += [  # map quality
    "ComponentStats",
    "auc",
    "blur_curve",
    "components",
    "evaluate_maps",
    "resize_curve",
    "to_rgb",
]
