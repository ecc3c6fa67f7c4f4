"""Load what ``topojax analyze`` needs from files: a model, its checkpoint, data.

Three steps, each checked cheaply and failing with one clear message before any
expensive work:

- `load_factory` imports a user's *factory*, ``path/to/model.py:make_model`` or
  ``package.module:make_model`` (like ``uvicorn main:app``), calls it with no
  arguments and checks what it returns (a `ModelParts`):

  - a ``flax.nnx.Module``;
  - ``(linen_module, variables)``, e.g. ``(net, net.init(key, x))``;
  - ``(module, variables, apply_kwargs)``: the keyword arguments of the
    forward pass, e.g. ``(net, variables, {"train": False})`` for a Linen
    model with BatchNorm (``variables`` is ``None`` for an NNX module).

- `restore_checkpoint` reads an Orbax checkpoint into the model after checking,
  from the checkpoint's metadata alone, that its parameter paths and shapes are
  the model's (the first mismatched path is named otherwise).
- `load_labelled_npz` reads inputs ``x``, integer labels ``y``, optional
  ``class_names`` and named per-input attribute arrays from an ``.npz`` file,
  never with pickle.

`resolve_layers` traces the model once on an example input (nothing is
computed) to check the layer names, or to choose every hidden post-activation
layer.
"""

from topojax.loading.checkpoint import restore_checkpoint
from topojax.loading.data import LabelledData, load_labelled_npz
from topojax.loading.factory import (
    FACTORY_CONTRACT,
    ModelParts,
    load_factory,
    output_shape,
    resolve_layers,
)

__all__ = [
    "FACTORY_CONTRACT",
    "LabelledData",
    "ModelParts",
    "load_factory",
    "load_labelled_npz",
    "output_shape",
    "resolve_layers",
    "restore_checkpoint",
]
