"""Read labelled inputs and per-input attributes from an ``.npz`` file.

Never with pickle: object arrays are refused with a message saying so.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["LabelledData", "load_labelled_npz"]

_LABEL_KINDS = "iu"
_INPUT_KINDS = "biuf"
_ATTRIBUTE_KINDS = "biuUS"
_SHOWN = 20  # names listed in an error message


@dataclasses.dataclass(frozen=True)
class LabelledData:
    """Inputs, labels and per-input attributes read from one ``.npz`` file.

    Attributes:
        x: ``(n, ...)`` inputs (numbers).
        y: ``(n,)`` integer class labels in ``0..n_classes-1``.
        attributes: ``{name: (n,) array}`` per-input attributes (ints, bools
            or strings), in the order asked for.
        class_names: one name per class, or ``None`` (``"0"``, ``"1"``, ...).
    """

    x: np.ndarray
    y: np.ndarray
    attributes: dict[str, np.ndarray]
    class_names: tuple[str, ...] | None = None


jax.tree_util.register_dataclass(
    LabelledData, data_fields=["x", "y", "attributes"], meta_fields=["class_names"]
)

_DATA_CONTRACT = "an .npz file (numpy.savez) with x (inputs) and y (integer labels)"


def _read(archive: Any, name: str, path: Path) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(
                f"{path}: array {name!r} is an object array, stored with pickle; "
                "expected plain numbers or strings (topojax never loads pickle)"
            ) from None
        raise ValueError(f"{path}: array {name!r} cannot be read: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: array {name!r} is damaged: {error}") from None


def _class_names(names: Any, where: str, n_classes: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    array = np.asarray(names)
    if array.ndim != 1 or array.dtype.kind not in "US":
        raise ValueError(
            f"{where} must be a 1-D array of strings; got shape {array.shape} "
            f"dtype {array.dtype}"
        )
    values = tuple(
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for v in array.tolist()
    )
    if len(values) < n_classes:
        raise ValueError(
            f"{where}: {len(values)} names for labels up to {n_classes - 1}; "
            f"expected at least {n_classes} names, one per class"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{where} must be distinct; got {list(values)}")
    return values


def load_labelled_npz(
    path: str | os.PathLike,
    attributes: Sequence[str] = (),
    *,
    class_names: Sequence[str] | None = None,
) -> LabelledData:
    """Read inputs, labels and attributes from an ``.npz`` file, without pickle.

    The file holds ``x`` ``(n, ...)`` numeric inputs, ``y`` ``(n,)`` integer
    labels (``>= 0``, at least two classes), optionally ``class_names`` (a 1-D
    string array) and any per-input attribute arrays ``(n,)``. Object arrays
    (which need pickle) are refused.

    Args:
        path: the ``.npz`` file (``np.savez(path, x=x, y=y, ...)``).
        attributes: names of attribute arrays to read (ints, bools or strings;
            one group per distinct value).
        class_names: names of the classes; overrides the file's
            ``class_names``.

    Returns:
        The checked `LabelledData`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        ValueError: not an ``.npz`` file, a pickle or object array, ``x`` or
            ``y`` or an attribute missing (the arrays in the file are listed),
            labels not 1-D integers, negative or not one per input, a single
            class, too few class names, or an attribute of the wrong shape or
            type.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"data {path} is a directory; expected {_DATA_CONTRACT}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"data file not found: {path}; expected {_DATA_CONTRACT}"
        )
    names = list(dict.fromkeys(attributes))
    if len(names) != len(attributes):
        raise ValueError(f"attribute names must be distinct; got {list(attributes)}")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:
        why = " (NumPy could read it only as a pickle, which topojax never loads)"
        why = why if "pickle" in str(error) else f" ({error})"
        raise ValueError(
            f"{path} is not an .npz file{why}; expected {_DATA_CONTRACT}"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"cannot read {path} ({error}); expected {_DATA_CONTRACT}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds one array (.npy); expected {_DATA_CONTRACT}")
    with archive:
        files = sorted(archive.files)
        for name, what in (
            ("x", "the inputs"),
            ("y", "the labels"),
            *((name, "an attribute") for name in names),
        ):
            if name not in files:
                raise ValueError(
                    f"{path} has no array {name!r} ({what}); arrays in the file: "
                    f"{files[:_SHOWN]}"
                )
        x = _read(archive, "x", path)
        y = _read(archive, "y", path)
        stored_names = (
            _read(archive, "class_names", path) if "class_names" in files else None
        )
        values = {name: _read(archive, name, path) for name in names}
    if x.ndim < 1 or x.dtype.kind not in _INPUT_KINDS:
        raise ValueError(
            f"{path}: x must be numeric inputs (n, ...); got shape {x.shape} "
            f"dtype {x.dtype}"
        )
    if y.ndim != 1 or y.dtype.kind not in _LABEL_KINDS:
        raise ValueError(
            f"{path}: y must be a 1-D integer array (one class index per input); "
            f"got shape {y.shape} dtype {y.dtype}"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{path}: x has {x.shape[0]} inputs but y has {y.shape[0]} labels; "
            "expected one label per input"
        )
    if y.size == 0:
        raise ValueError(f"{path}: x and y are empty; expected labelled inputs")
    if y.min() < 0:
        raise ValueError(f"{path}: labels must be >= 0; got {int(y.min())}")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"{path}: y holds a single class ({int(classes[0])}); expected at least "
            "two (class NAPs, each class's mean minus the mean over classes, would "
            "all be exactly zero)"
        )
    n_classes = int(classes[-1]) + 1
    if class_names is not None:
        names_given = _class_names(list(class_names), "class_names", n_classes)
    else:
        names_given = _class_names(stored_names, f"{path}: class_names", n_classes)
    for name, value in values.items():
        if value.ndim != 1 or value.shape[0] != x.shape[0]:
            raise ValueError(
                f"{path}: attribute {name!r} has shape {value.shape}; expected "
                f"({x.shape[0]},), one value per input"
            )
        if value.dtype.kind not in _ATTRIBUTE_KINDS:
            raise ValueError(
                f"{path}: attribute {name!r} has dtype {value.dtype}; expected "
                "ints, bools or strings (one group per distinct value)"
            )
    return LabelledData(x=x, y=y, attributes=values, class_names=names_given)
