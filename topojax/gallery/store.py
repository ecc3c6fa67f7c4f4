"""Save and load an `Analysis` as one ``.npz`` file (arrays plus a JSON header).

No pickle is involved: the arrays are stored under index-based keys
(``layer3/groups1/values``) and everything else (names, metrics, parameters) in a
JSON document stored as a ``uint8`` array under ``__analysis__.json``. This is the
input of ``topojax gallery ANALYSIS... --out DIR``.

Loading is bounded: `load_analysis` reads the header, then only the arrays the
header refers to, each after checking the size its ``.npy`` header declares, and
refuses a file whose arrays together declare more than ``max_bytes``
(`MAX_LOAD_BYTES`, 2 GiB, by default). Arrays of other names in the archive are
never read; object (pickled) arrays are refused.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from topojax.gallery.model import Analysis, GroupSet, LayerView, TrainingSeries

__all__ = ["MAX_LOAD_BYTES", "load_analysis", "load_npz", "save_analysis"]

FORMAT = "topojax-analysis"
FORMAT_VERSION = 1
_HEADER = "__analysis__.json"
MAX_LOAD_BYTES = 2 * 1024**3
# Array kinds a saved analysis holds: bool, signed and unsigned ints, floats.
_KINDS = "biuf"
_MAX_HEADER_BYTES = 64 * 1024**2
_CHUNK = 1 << 24


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
            for optional in ("exemplars", "mean_inputs"):
                if getattr(group_set, optional) is not None:
                    arrays[f"{prefix}/groups{k}/{optional}"] = getattr(
                        group_set, optional
                    )
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
            metric_names = list(layer.training.metrics)
            for m, metric in enumerate(metric_names):
                arrays[f"{prefix}/training/metric{m}"] = layer.training.metrics[metric]
            if layer.training.counts is not None:
                arrays[f"{prefix}/training/counts"] = layer.training.counts
            training = {
                "labels": list(layer.training.labels),
                "group_names": list(layer.training.group_names),
                "method": layer.training.method,
                "description": layer.training.description,
                "metrics": metric_names,
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


class _Members(Mapping):
    """The arrays of an open ``.npz`` archive, each read when first asked for.

    Every read checks the member's ``.npy`` header before allocating: a numeric
    dtype (no pickle), a size that fits in the member and in what is left of
    the byte budget shared by all reads. Reading a name twice reads it once.
    """

    def __init__(self, archive: zipfile.ZipFile, max_bytes: int) -> None:
        self._archive = archive
        self._members = {
            name[: -len(".npy")]: name
            for name in archive.namelist()
            if name.endswith(".npy")
        }
        self._budget = max_bytes
        self._max_bytes = max_bytes
        self._read: dict[str, np.ndarray] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._read:
            if name not in self._members:
                raise KeyError(name)
            self._read[name] = self.read(name)
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def read(self, name: str, limit: int | None = None) -> np.ndarray:
        """Read array ``name``, refusing it if it declares more than ``limit``."""
        try:
            return self._read_member(name, limit)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            raise ValueError(f"array {name!r} is damaged: {error}") from None
        except RuntimeError as error:  # an encrypted member
            raise ValueError(f"array {name!r} cannot be read: {error}") from None

    def _read_member(self, name: str, limit: int | None) -> np.ndarray:
        info = self._archive.getinfo(self._members[name])
        with self._archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except ValueError as error:
                raise ValueError(f"array {name!r}: bad .npy header: {error}") from None
            shape, fortran, dtype = header
            if dtype.hasobject or dtype.kind not in _KINDS:
                raise ValueError(
                    f"array {name!r} has dtype {dtype}; expected plain numbers "
                    "(object arrays are never loaded)"
                )
            if any(extent < 0 for extent in shape):
                raise ValueError(f"array {name!r} declares a negative shape {shape}")
            n_bytes = math.prod(shape) * dtype.itemsize
            if limit is not None and n_bytes > limit:
                raise ValueError(
                    f"array {name!r} declares {n_bytes} bytes; at most {limit} expected"
                )
            if n_bytes > self._budget:
                raise ValueError(
                    f"array {name!r} declares shape {shape} of {dtype} ({n_bytes} "
                    f"bytes): the arrays read would exceed the limit of "
                    f"{self._max_bytes} bytes (pass a larger max_bytes to load it)"
                )
            stored = info.file_size - member.tell()
            if n_bytes != stored:
                raise ValueError(
                    f"array {name!r} declares {n_bytes} bytes but its member holds "
                    f"{stored}: the file is damaged"
                )
            self._budget -= n_bytes
            data = bytearray(n_bytes)
            view = memoryview(data)
            filled = 0
            while filled < n_bytes:
                chunk = member.read(min(_CHUNK, n_bytes - filled))
                if not chunk:
                    raise ValueError(f"array {name!r} is shorter than its header")
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
            member.read(1)  # at the end: lets zipfile check the CRC
        array = np.frombuffer(data, dtype=dtype)
        return array.reshape(shape, order="F" if fortran else "C")


def load_npz(
    path: str | os.PathLike,
    names: list[str] | None = None,
    *,
    max_bytes: int = MAX_LOAD_BYTES,
) -> dict[str, np.ndarray]:
    """Read arrays of a ``.npz`` file, bounded in memory and without pickle.

    Each array's ``.npy`` header is checked before anything is allocated.

    Args:
        path: the ``.npz`` file.
        names: the arrays to read; None reads every array of the archive.
        max_bytes: the most bytes all arrays read may declare together.

    Returns:
        ``{name: array}`` for ``names`` (or every array).

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: not a zip archive, damaged, a name missing, an object or
            non-numeric array, or declared sizes beyond ``max_bytes``.
    """
    path = _existing_file(path, ".npz file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _Members(archive, max_bytes)
            wanted = list(members) if names is None else list(names)
            for name in wanted:
                if name not in members:
                    raise ValueError(
                        f"{path}: no array {name!r}; arrays in the file: "
                        f"{sorted(members)[:20]}"
                    )
            return {name: members[name] for name in wanted}
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected an {what}")
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    return path


def load_analysis(
    path: str | os.PathLike, *, max_bytes: int = MAX_LOAD_BYTES
) -> Analysis:
    """Read an `Analysis` written by `save_analysis` (no pickle is loaded).

    Only the header and the arrays it refers to are read, each after checking
    the size its ``.npy`` header declares; other arrays in the file are
    ignored.

    Args:
        path: the ``.npz`` file.
        max_bytes: the most bytes the header and arrays may declare together
            (default `MAX_LOAD_BYTES`, 2 GiB); larger files are refused before
            anything big is allocated.

    Returns:
        The analysis, checked like a freshly constructed one.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: if the file is not a topojax analysis, is damaged, has a
            header or field of the wrong type, or declares more than
            ``max_bytes``.
    """
    path = _existing_file(path, "analysis file")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = _Members(archive, max_bytes)
            if _HEADER not in arrays:
                raise ValueError(f"{path} is not a topojax analysis (no {_HEADER})")
            raw = arrays.read(_HEADER, limit=_MAX_HEADER_BYTES)
            header = _parse_header(raw, path)
            try:
                return _analysis_from(header, arrays)
            except KeyError as error:
                raise ValueError(f"{path}: missing array or field {error}") from None
            except (TypeError, AttributeError, IndexError) as error:
                raise ValueError(
                    f"{path}: damaged header (a field has the wrong type: {error})"
                ) from None
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz analysis: {error}") from None


def _parse_header(raw: np.ndarray, path: Path) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path}: damaged header ({raw.dtype} {raw.shape} array)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: damaged header (not JSON: {error})") from None
    if not isinstance(header, dict):
        raise ValueError(
            f"{path}: damaged header (a JSON {type(header).__name__}; expected an "
            "object)"
        )
    if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format {header.get('format')!r} version "
            f"{header.get('version')!r}; expected {FORMAT!r} {FORMAT_VERSION}"
        )
    return header


def _analysis_from(header: dict, arrays: Mapping[str, np.ndarray]) -> Analysis:
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
                exemplars=arrays.get(f"{prefix}/groups{k}/exemplars"),
                mean_inputs=arrays.get(f"{prefix}/groups{k}/mean_inputs"),
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
                metrics={
                    metric: arrays[f"{prefix}/training/metric{m}"]
                    for m, metric in enumerate(meta["training"].get("metrics", []))
                },
                counts=arrays.get(f"{prefix}/training/counts"),
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
