"""topojax: topographic activation maps of neural-network layers, in JAX.

The pipeline, each stage a function from data to data::

    capture -> profiles -> layout -> render -> gallery

>>> import topojax as tj
>>> capture_fn = tj.make_capture(model, ["hidden1"])            # doctest: +SKIP
>>> profiles = tj.profile(capture_fn, batches, group_names)      # doctest: +SKIP
>>> layout = tj.layout(tj.layout_features(profiles["hidden1"]),  # doctest: +SKIP
...                    "optimize", key=jax.random.key(0))
>>> images = tj.render(layout, tj.naps(profiles["hidden1"]))     # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from topojax import align, gallery, groups, metrics, training
from topojax.capture import (
    StateCapture,
    capture,
    list_layers,
    make_capture,
    make_state_capture,
    post_activation_layers,
)
from topojax.colors import colorbar, colorize
from topojax.distributed import combine_profiles, process_shard
from topojax.layout import METHODS, Layout, get_method, layout
from topojax.pipeline import (
    CLASSES,
    CONFUSION,
    ERRORS,
    GroupSpec,
    analyze,
    attribute_groups,
)
from topojax.png import encode_png, write_pngs
from topojax.profiles import (
    LayerProfile,
    array_batches,
    balanced_sample,
    layout_features,
    naps,
    profile,
    profile_sets,
    reduce_units,
    sample_profiles,
    shard_batch,
)
from topojax.render import RenderPlan, apply_plan, nearest_neuron, render, render_plan

try:
    __version__ = version("topojax")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CLASSES",
    "CONFUSION",
    "ERRORS",
    "METHODS",
    "GroupSpec",
    "LayerProfile",
    "Layout",
    "RenderPlan",
    "StateCapture",
    "__version__",
    "align",
    "analyze",
    "apply_plan",
    "array_batches",
    "attribute_groups",
    "balanced_sample",
    "capture",
    "colorbar",
    "colorize",
    "combine_profiles",
    "encode_png",
    "gallery",
    "get_method",
    "groups",
    "layout",
    "layout_features",
    "list_layers",
    "make_capture",
    "make_state_capture",
    "metrics",
    "naps",
    "nearest_neuron",
    "post_activation_layers",
    "process_shard",
    "profile",
    "profile_sets",
    "reduce_units",
    "render",
    "render_plan",
    "sample_profiles",
    "shard_batch",
    "training",
    "write_pngs",
]
