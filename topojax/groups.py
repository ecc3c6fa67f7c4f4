"""Groupings of inputs for the profile step, group-size reports and contrastive NAPs.

A *grouping* assigns every input example to one group. Each function here returns
``(group_ids, group_names)``: ``group_ids`` ``(n_examples,)`` int32 in
``[0, len(group_names))`` and ``group_names`` a tuple of strings, ready for
``topojax.profiles.profile(capture_fn, [(x, group_ids)], group_names)``.

Groupings run on the host (NumPy): labels, predictions and attributes are data at
the edge of the pipeline. Naming conventions:

- `by_label`: one group per class, named by ``class_names`` or ``"0"``, ``"1"``, ...
- `by_attribute`: one group per distinct value of any array (e.g. a demographic
  attribute), named ``str(value)`` unless ``names`` maps values to names.
- `error_contrast`: two groups per class, ``"3/correct"`` and ``"3/wrong"``
  (all ``2 * n_classes`` groups are kept, so shapes do not depend on the model).
- `confusion_cells`: one group per (true, predicted) pair that *occurs*, named
  ``"3→5"`` (true class, arrow U+2192, predicted class); the arrow can be changed
  with ``separator``.
- `combine`: the cross product of two groupings (e.g. class x attribute), named
  ``"a&b"``, keeping only combinations that occur.

Groups may be empty or tiny; nothing here fails on that. `group_report` lists each
group's size and flags the empty and tiny ones, so a gallery can show them.

`contrastive_naps` subtracts the (optionally size-weighted) mean NAP of a chosen set
of reference groups from every group's NAP; `contrast_pairs` and
`wrong_minus_correct` take differences of named pairs (e.g. ``"3/wrong"`` minus
``"3/correct"``). The paper's normalisation (subtracting the unweighted mean over
all groups) shifts every group by the same vector, so differences of NAPs equal
differences of the plain group means: these functions accept either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Grouping = tuple[np.ndarray, tuple[str, ...]]


def _as_int_labels(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D (n_examples,); got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(
                f"{what} must be integer class indices; got dtype {array.dtype}"
            )
    if array.size and array.min() < 0:
        raise ValueError(f"{what} must be >= 0; got minimum {int(array.min())}")
    return array.astype(np.int64)


def class_names_for(
    class_names: Sequence[str] | None, *arrays: np.ndarray
) -> tuple[str, ...]:
    """The class names of integer class arrays (labels, predictions).

    Args:
        class_names: given names, or None for ``"0"``, ``"1"``, ... up to the
            largest class index in ``arrays``.
        *arrays: 1-D non-negative integer class indices.

    Returns:
        One name per class (given names may cover classes that never occur).

    Raises:
        ValueError: a class index out of range of ``class_names``, or
            repeated names.
    """
    n_seen = max((int(a.max()) + 1 for a in arrays if a.size), default=0)
    if class_names is None:
        return tuple(str(i) for i in range(n_seen))
    names = tuple(str(name) for name in class_names)
    if n_seen > len(names):
        raise ValueError(
            f"class index {n_seen - 1} is out of range for {len(names)} class_names "
            f"{names!r}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct; got {names!r}")
    return names


def by_label(labels, class_names: Sequence[str] | None = None) -> Grouping:
    """One group per class.

    Args:
        labels: ``(n_examples,)`` integer class indices.
        class_names: optional names, one per class; without them classes are named
            ``"0"`` ... ``str(max(labels))``. Classes without examples are kept as
            empty groups.

    Returns:
        ``(group_ids (n_examples,) int32, group_names)``.

    Raises:
        ValueError: labels not 1-D non-negative integers, or a label out of range
            of ``class_names``.
    """
    labels = _as_int_labels(labels, "labels")
    names = class_names_for(class_names, labels)
    return labels.astype(np.int32), names


def by_attribute(values, names: Mapping | Sequence[str] | None = None) -> Grouping:
    """One group per distinct value of an attribute array (strings, ints, bools).

    Args:
        values: ``(n_examples,)`` attribute of each example.
        names: optional mapping ``value -> group name``; or a sequence of names in
            the sorted order of the distinct values. Default: ``str(value)``.

    Returns:
        ``(group_ids (n_examples,) int32, group_names)``, groups in sorted order of
        the distinct values.

    Raises:
        ValueError: ``values`` not 1-D, or ``names`` does not cover the values.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"values must be 1-D (n_examples,); got shape {array.shape}")
    distinct, group_ids = np.unique(array, return_inverse=True)
    if names is None:
        group_names = tuple(str(v) for v in distinct.tolist())
    elif isinstance(names, Mapping):
        missing = [v for v in distinct.tolist() if v not in names]
        if missing:
            raise ValueError(f"names has no entry for attribute values {missing!r}")
        group_names = tuple(str(names[v]) for v in distinct.tolist())
    else:
        group_names = tuple(str(n) for n in names)
        if len(group_names) != len(distinct):
            raise ValueError(
                f"got {len(group_names)} names for {len(distinct)} distinct values "
                f"{distinct.tolist()!r}"
            )
    if len(set(group_names)) != len(group_names):
        raise ValueError(f"group names must be distinct; got {group_names!r}")
    return group_ids.reshape(-1).astype(np.int32), group_names


def _check_predictions(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_int_labels(labels, "labels")
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:  # logits or probabilities
        predictions = predictions.argmax(axis=1)
    predictions = _as_int_labels(predictions, "predictions")
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions must have the shape of labels {labels.shape}; "
            f"got {predictions.shape}"
        )
    return labels, predictions


def error_contrast(
    labels, predictions, class_names: Sequence[str] | None = None
) -> Grouping:
    """Per class, correctly vs wrongly classified examples.

    Group ``2 * c`` is ``"<c>/correct"`` (label ``c``, predicted ``c``), group
    ``2 * c + 1`` is ``"<c>/wrong"`` (label ``c``, predicted anything else). All
    ``2 * n_classes`` groups are returned, empty or not.

    Args:
        labels: ``(n_examples,)`` true class indices.
        predictions: ``(n_examples,)`` predicted class indices, or logits
            ``(n_examples, n_classes)`` (argmax is taken).
        class_names: optional class names.

    Returns:
        ``(group_ids (n_examples,) int32, group_names)``.
    """
    labels, predictions = _check_predictions(labels, predictions)
    names = class_names_for(class_names, labels, predictions)
    group_ids = 2 * labels + (predictions != labels)
    group_names = tuple(f"{name}/{kind}" for name in names for kind in _KINDS)
    return group_ids.astype(np.int32), group_names


_KINDS = ("correct", "wrong")


def confusion_cells(
    labels,
    predictions,
    class_names: Sequence[str] | None = None,
    *,
    separator: str = "→",
    include_correct: bool = True,
) -> Grouping:
    """One group per (true, predicted) pair that occurs, e.g. ``"3→5"``.

    Args:
        labels: ``(n_examples,)`` true class indices.
        predictions: ``(n_examples,)`` predicted indices or ``(n_examples, C)``
            logits.
        class_names: optional class names.
        separator: between true and predicted name (default U+2192 "→"; use
            ``"/"`` or ``"_"`` for ASCII names).
        include_correct: keep the diagonal cells ``"3→3"``; without them, correctly
            classified examples get group id ``-1`` (drop them before profiling).

    Returns:
        ``(group_ids (n_examples,) int32, group_names)``, cells sorted by (true,
        predicted).
    """
    labels, predictions = _check_predictions(labels, predictions)
    names = class_names_for(class_names, labels, predictions)
    n_classes = max(len(names), 1)
    cell = labels * n_classes + predictions
    keep = np.ones_like(cell, dtype=bool) if include_correct else labels != predictions
    occurring, inverse = np.unique(cell[keep], return_inverse=True)
    group_ids = np.full(cell.shape, -1, dtype=np.int32)
    group_ids[keep] = inverse.reshape(-1)
    group_names = tuple(
        f"{names[c // n_classes]}{separator}{names[c % n_classes]}"
        for c in occurring.tolist()
    )
    return group_ids, group_names


def combine(first: Grouping, second: Grouping, *, separator: str = "&") -> Grouping:
    """Cross product of two groupings of the same examples (e.g. class x attribute).

    Only combinations that occur become groups, named ``"a&b"``. Examples with id
    ``-1`` in either grouping get ``-1``.

    Returns:
        ``(group_ids (n_examples,) int32, group_names)``.
    """
    ids_a, names_a = np.asarray(first[0]), tuple(first[1])
    ids_b, names_b = np.asarray(second[0]), tuple(second[1])
    if ids_a.shape != ids_b.shape or ids_a.ndim != 1:
        raise ValueError(
            f"groupings must have equal 1-D shapes; got {ids_a.shape} and {ids_b.shape}"
        )
    valid = (ids_a >= 0) & (ids_b >= 0)
    cell = ids_a.astype(np.int64) * max(len(names_b), 1) + ids_b
    occurring, inverse = np.unique(cell[valid], return_inverse=True)
    group_ids = np.full(ids_a.shape, -1, dtype=np.int32)
    group_ids[valid] = inverse.reshape(-1)
    n_b = max(len(names_b), 1)
    group_names = tuple(
        f"{names_a[c // n_b]}{separator}{names_b[c % n_b]}" for c in occurring.tolist()
    )
    return group_ids, group_names


@dataclasses.dataclass(frozen=True)
class GroupReport:
    """Sizes of the groups of a grouping (host data, for logs and the gallery).

    Attributes:
        group_names: ``(G,)`` names.
        sizes: ``(G,)`` number of examples in each group.
        min_size: groups with ``0 < size < min_size`` are called tiny.
        n_unassigned: examples with group id ``-1`` (not in any group).
    """

    group_names: tuple[str, ...]
    sizes: tuple[int, ...]
    min_size: int
    n_unassigned: int = 0

    @property
    def empty(self) -> tuple[str, ...]:
        """Names of the groups without examples."""
        return tuple(
            n for n, s in zip(self.group_names, self.sizes, strict=True) if s == 0
        )

    @property
    def tiny(self) -> tuple[str, ...]:
        """Names of the non-empty groups smaller than ``min_size``."""
        return tuple(
            n
            for n, s in zip(self.group_names, self.sizes, strict=True)
            if 0 < s < self.min_size
        )

    def as_dict(self) -> dict[str, int]:
        """``{group name: size}``."""
        return dict(zip(self.group_names, self.sizes, strict=True))

    def __str__(self) -> str:
        """One line per group, flagged ``empty`` or ``tiny``."""
        lines = []
        for name, size in zip(self.group_names, self.sizes, strict=True):
            flag = (
                " (empty)" if size == 0 else (" (tiny)" if size < self.min_size else "")
            )
            lines.append(f"{name}: {size}{flag}")
        if self.n_unassigned:
            lines.append(f"(not in any group): {self.n_unassigned}")
        return "\n".join(lines)


def group_sizes(group_ids, n_groups: int) -> np.ndarray:
    """Examples per group, ``(n_groups,)`` int64; ids ``-1`` are not counted.

    Raises:
        ValueError: an id ``>= n_groups`` or ``< -1``.
    """
    ids = np.asarray(group_ids).reshape(-1)
    if ids.size and (ids.max() >= n_groups or ids.min() < -1):
        raise ValueError(
            f"group ids must be in [-1, {n_groups}); got range "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )
    return np.bincount(ids[ids >= 0], minlength=n_groups).astype(np.int64)


def group_report(
    group_ids, group_names: Sequence[str], *, min_size: int = 5
) -> GroupReport:
    """Report every group's size, flagging empty and tiny groups.

    Args:
        group_ids: ``(n_examples,)`` ids in ``[-1, G)``.
        group_names: ``(G,)`` names.
        min_size: non-empty groups smaller than this are flagged tiny (their NAPs
            are noisy).

    Returns:
        `GroupReport`.
    """
    names = tuple(group_names)
    sizes = group_sizes(group_ids, len(names))
    n_unassigned = int((np.asarray(group_ids) < 0).sum())
    return GroupReport(names, tuple(int(s) for s in sizes), int(min_size), n_unassigned)


def _resolve(groups, group_names: Sequence[str] | None, n_groups: int) -> np.ndarray:
    indices = []
    for group in groups:
        if isinstance(group, str):
            if group_names is None or group not in group_names:
                raise ValueError(
                    f"unknown group name {group!r}; expected one of "
                    f"{list(group_names or ())} (pass group_names to use names)"
                )
            indices.append(list(group_names).index(group))
        else:
            index = int(group)
            if not -n_groups <= index < n_groups:
                raise ValueError(
                    f"group index {index} out of range for {n_groups} groups"
                )
            indices.append(index % n_groups)
    if not indices:
        raise ValueError("reference_groups must name at least one group")
    return np.asarray(indices, dtype=np.int32)


def contrastive_naps(
    naps,
    reference_groups: Sequence[int | str],
    *,
    weights=None,
    group_names: Sequence[str] | None = None,
) -> jax.Array:
    """Each group's NAP minus the (weighted) mean NAP of chosen reference groups.

    ``out[g] = naps[g] - sum_r w_r naps[r] / sum_r w_r`` over the reference
    groups ``r`` (the contrastive NAPs of iNNtrospect).

    Args:
        naps: ``(G, N)`` (or ``(G, N, ...)``) group NAPs or group means.
        reference_groups: indices or names (with ``group_names``) of the groups
            whose mean is subtracted, e.g. all ``"/correct"`` groups.
        weights: ``None`` for equal weights, or ``(G,)`` non-negative weights such
            as the group sizes (``LayerProfile.counts``), so that empty reference
            groups are ignored and large ones count more.
        group_names: ``(G,)`` names, needed when ``reference_groups`` has names.

    Returns:
        ``(G, N)`` contrastive NAPs.

    Raises:
        ValueError: unknown reference group, wrong weight shape, or reference
            weights summing to zero (all reference groups empty).
    """
    naps = jnp.asarray(naps)
    n_groups = naps.shape[0]
    if group_names is not None and len(group_names) != n_groups:
        raise ValueError(
            f"got {len(group_names)} group_names for naps with {n_groups} groups"
        )
    reference = _resolve(reference_groups, group_names, n_groups)
    if weights is None:
        ref_weights = np.ones(len(reference), dtype=np.float32)
    else:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != (n_groups,) or (weights < 0).any():
            raise ValueError(
                f"weights must be ({n_groups},) non-negative; got shape {weights.shape}"
            )
        ref_weights = weights[reference]
    if ref_weights.sum() <= 0:
        raise ValueError(
            "the reference groups "
            f"{[group_names[i] if group_names else int(i) for i in reference]} "
            "all have zero weight (empty); nothing to contrast with"
        )
    ref_weights = ref_weights / ref_weights.sum()
    reference_mean = jnp.tensordot(
        jnp.asarray(ref_weights), naps[jnp.asarray(reference)], axes=1
    )
    return naps - reference_mean[None]


def contrast_pairs(
    naps,
    group_names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    counts=None,
    min_size: int = 1,
) -> tuple[jax.Array, tuple[str, ...]]:
    """Differences ``naps[a] - naps[b]`` for named pairs of groups.

    Pairs where either group has fewer than ``min_size`` examples (when ``counts``
    is given) are skipped, not failed; `group_report` tells which groups those are.

    Args:
        naps: ``(G, N)`` NAPs or group means.
        group_names: ``(G,)`` names.
        pairs: ``(minuend, subtrahend)`` names, e.g. ``("3/wrong", "3/correct")``.
        counts: optional ``(G,)`` group sizes.
        min_size: smallest size of both groups for a pair to be kept.

    Returns:
        ``(values (P, N), names)`` with names ``"a − b"`` (U+2212) of the kept
        pairs; ``P`` may be 0.
    """
    naps = jnp.asarray(naps)
    names = list(group_names)
    if len(names) != naps.shape[0]:
        raise ValueError(
            f"got {len(names)} group_names for naps with {naps.shape[0]} groups"
        )
    sizes = None if counts is None else np.asarray(counts).reshape(-1)
    kept, kept_names = [], []
    for a, b in pairs:
        ia, ib = _resolve([a, b], names, len(names))
        if sizes is not None and min(sizes[ia], sizes[ib]) < min_size:
            continue
        kept.append((ia, ib))
        kept_names.append(f"{a} − {b}")
    if not kept:
        return jnp.zeros((0, *naps.shape[1:]), naps.dtype), ()
    ia, ib = (jnp.asarray(v) for v in zip(*kept, strict=True))
    return naps[ia] - naps[ib], tuple(kept_names)


def wrong_minus_correct(
    naps, group_names: Sequence[str], *, counts=None, min_size: int = 1
) -> tuple[jax.Array, tuple[str, ...]]:
    """Per class, the ``"c/wrong"`` NAP minus the ``"c/correct"`` NAP.

    For groups from `error_contrast`. Classes without wrong (or correct) examples
    are skipped when ``counts`` is given.

    Returns:
        ``(values (P, N), class names)`` for the ``P`` classes kept.
    """
    classes = [n[: -len("/correct")] for n in group_names if n.endswith("/correct")]
    pairs = [(f"{c}/wrong", f"{c}/correct") for c in classes]
    values, names = contrast_pairs(
        naps, group_names, pairs, counts=counts, min_size=min_size
    )
    return values, tuple(n.split("/wrong − ")[0] for n in names)


__all__ = [
    "GroupReport",
    "Grouping",
    "by_attribute",
    "by_label",
    "class_names_for",
    "combine",
    "confusion_cells",
    "contrast_pairs",
    "contrastive_naps",
    "error_contrast",
    "group_report",
    "group_sizes",
    "wrong_minus_correct",
]
