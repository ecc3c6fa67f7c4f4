"""Static HTML gallery of topographic maps: data model, builder, saved analyses."""

from topojax.gallery.build import build_gallery, check_target, is_gallery
from topojax.gallery.model import Analysis, GroupSet, LayerView, TrainingSeries
from topojax.gallery.names import safe_join, slugify, unique_slugs
from topojax.gallery.order import group_order
from topojax.gallery.store import load_analysis, save_analysis
from topojax.gallery.synthetic import synthetic_analysis

__all__ = [
    "Analysis",
    "GroupSet",
    "LayerView",
    "TrainingSeries",
    "build_gallery",
    "check_target",
    "group_order",
    "is_gallery",
    "load_analysis",
    "safe_join",
    "save_analysis",
    "slugify",
    "synthetic_analysis",
    "unique_slugs",
]
