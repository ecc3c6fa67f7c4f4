"""Save and load an `Analysis` as one ``.npz`` file (arrays plus a JSON header).

No pickle is involved: the arrays are stored under index-based keys
(``layer3/groups1/values``) and everything else (names, metrics, parameters) in a
JSON document stored as a ``uint8`` array under ``__analysis__.json``. This is the
input of ``topojax gallery ANALYSIS... --out DIR``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from topojax.gallery.model import Analysis, GroupSet, LayerView, TrainingSeries

__all__ = ["load_analysis", "save_analysis"]

FORMAT = "topojax-analysis"
FORMAT_VERSION = 1
_HEADER = "__analysis__.json"


def _header_and_arrays(analysis: Analysis) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(analysis.layers):
        prefix = f"layer{i}"
        methods = list(layer.layouts)
        for j, method in enumerate(methods):
            arrays[f"{prefix}/layout{j}"] = layer.layouts[method]
        group_sets = []
        for k, group_set in enumerate(layer.group_sets):
            arrays[f"{prefix}/groups{k}/counts"] = group_set.counts
            arrays[f"{prefix}/groups{k}/values"] = group_set.values
            group_sets.append(
                {
                    "name": group_set.name,
                    "group_names": list(group_set.group_names),
                    "description": group_set.description,
                    "order": None if group_set.order is None else list(group_set.order),
                }
            )
        training = None
        if layer.training is not None:
            arrays[f"{prefix}/training/values"] = layer.training.values
            training = {
                "labels": list(layer.training.labels),
                "group_names": list(layer.training.group_names),
                "method": layer.training.method,
                "description": layer.training.description,
            }
        if layer.top_inputs is not None:
            arrays[f"{prefix}/top_inputs"] = layer.top_inputs
        if layer.profile_features is not None:
            arrays[f"{prefix}/profile_features"] = layer.profile_features
        layers.append(
            {
                "name": layer.name,
                "n_neurons": layer.n_neurons,
                "methods": methods,
                "layout_metrics": layer.layout_metrics,
                "group_sets": group_sets,
                "training": training,
            }
        )
    if analysis.inputs is not None:
        arrays["inputs"] = analysis.inputs
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_name": analysis.model_name,
        "description": analysis.description,
        "params": analysis.params,
        "layers": layers,
    }
    return header, arrays


def save_analysis(analysis: Analysis, path: str | os.PathLike) -> Path:
    """Write ``analysis`` to ``path`` (a ``.npz`` file, written exactly there).

    Args:
        analysis: what to save.
        path: the file to write; its parent directory must exist.

    Returns:
        ``path`` as a `Path`.

    Raises:
        TypeError: if ``analysis`` is not an `Analysis`.
    """
    if not isinstance(analysis, Analysis):
        raise TypeError(f"expected an Analysis; got {type(analysis).__name__}")
    header, arrays = _header_and_arrays(analysis)
    text = json.dumps(header, sort_keys=True)  # NaN metrics round-trip in Python
    arrays[_HEADER] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def load_analysis(path: str | os.PathLike) -> Analysis:
    """Read an `Analysis` written by `save_analysis` (no pickle is loaded).

    Args:
        path: the ``.npz`` file.

    Returns:
        The analysis, checked like a freshly constructed one.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a topojax analysis or is damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no analysis file at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable .npz analysis: {error}") from error
    if _HEADER not in arrays:
        raise ValueError(f"{path} is not a topojax analysis (no {_HEADER})")
    header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format {header.get('format')!r} version "
            f"{header.get('version')!r}; expected {FORMAT!r} {FORMAT_VERSION}"
        )
    try:
        return _analysis_from(header, arrays)
    except KeyError as error:
        raise ValueError(f"{path}: missing array {error}") from error


def _analysis_from(header: dict, arrays: dict[str, np.ndarray]) -> Analysis:
    layers = []
    for i, meta in enumerate(header["layers"]):
        prefix = f"layer{i}"
        group_sets = tuple(
            GroupSet(
                name=entry["name"],
                group_names=tuple(entry["group_names"]),
                counts=arrays[f"{prefix}/groups{k}/counts"],
                values=arrays[f"{prefix}/groups{k}/values"],
                description=entry["description"],
                order=None if entry["order"] is None else tuple(entry["order"]),
            )
            for k, entry in enumerate(meta["group_sets"])
        )
        training = None
        if meta["training"] is not None:
            training = TrainingSeries(
                labels=tuple(meta["training"]["labels"]),
                group_names=tuple(meta["training"]["group_names"]),
                values=arrays[f"{prefix}/training/values"],
                method=meta["training"]["method"],
                description=meta["training"]["description"],
            )
        layers.append(
            LayerView(
                name=meta["name"],
                n_neurons=meta["n_neurons"],
                layouts={
                    method: arrays[f"{prefix}/layout{j}"]
                    for j, method in enumerate(meta["methods"])
                },
                layout_metrics=meta["layout_metrics"],
                group_sets=group_sets,
                training=training,
                top_inputs=arrays.get(f"{prefix}/top_inputs"),
                profile_features=arrays.get(f"{prefix}/profile_features"),
            )
        )
    return Analysis(
        model_name=header["model_name"],
        layers=tuple(layers),
        inputs=arrays.get("inputs"),
        params=header["params"],
        description=header["description"],
    )
