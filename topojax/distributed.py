"""Profiles across processes: shard the data, then add the sums of every process.

Stage 2 across hosts (capture -> **profiles** -> layout). Each JAX process (one
per host, started with `jax.distributed.initialize`) profiles its own share of the
inputs, picked by `process_shard`; `combine_profiles` then adds the per-group sums
and counts of all processes, so every process holds the profiles of a one-process
run over all the inputs.

>>> shard = process_shard(len(x))                                   # doctest: +SKIP
>>> profiles = profile(capture_fn, array_batches(x[shard], ids[shard], 256),
...                    group_names)                                 # doctest: +SKIP
>>> profiles = combine_profiles(profiles)                           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from topojax.profiles import LayerProfile

_INT32_MAX = np.iinfo(np.int32).max


def process_shard(
    n: int, *, process_index: int | None = None, process_count: int | None = None
) -> slice:
    """This process's contiguous share of ``n`` inputs.

    Process ``i`` of ``P`` gets ``range(i * n // P, (i + 1) * n // P)``: the
    shares are disjoint, cover ``range(n)`` in process order, and differ in size
    by at most one.

    Args:
        n: number of inputs, ``>= 0``.
        process_index: the process; ``None`` means `jax.process_index`.
        process_count: number of processes; ``None`` means `jax.process_count`.

    Returns:
        A ``slice`` for the inputs, e.g. ``x[process_shard(len(x))]``. It is
        empty when ``n < process_count`` for some processes.

    Raises:
        TypeError: ``n``, ``process_index`` or ``process_count`` not an integer.
        ValueError: ``n < 0``, ``process_count < 1`` or ``process_index`` not in
            ``[0, process_count)``.
    """
    n = operator.index(n)
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    index, count = operator.index(index), operator.index(count)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if count < 1:
        raise ValueError(f"process_count must be >= 1; got {count}")
    if not 0 <= index < count:
        raise ValueError(f"process_index must be in [0, {count}); got {index}")
    return slice(index * n // count, (index + 1) * n // count)


def combine_profiles(profiles: dict[str, LayerProfile]) -> dict[str, LayerProfile]:
    """Add the sums and counts of every JAX process's profiles.

    Call it on every process (it is a collective), each with the profiles of
    its own share of the inputs (see `process_shard`). Every process first
    checks that all processes hold the same layers, group names, shapes and
    dtypes, then receives the same result: the profiles of all the inputs.

    Args:
        profiles: dict mapping layer names to `LayerProfile` s, as returned by
            `topojax.profile`.

    Returns:
        A dict with the keys of ``profiles`` (in its order) whose profiles have
        the sums (float32) and counts (int32) added over all processes,
        identical on every process. With one process, ``profiles`` itself.

    Raises:
        TypeError: ``profiles`` is not a dict of `LayerProfile` s.
        ValueError: the processes differ in their layers, group names, shapes
            or dtypes (raised on every process, before the sums are gathered),
            or a combined count exceeds the int32 range.
    """
    if not isinstance(profiles, Mapping) or not all(
        isinstance(value, LayerProfile) for value in profiles.values()
    ):
        types = (
            {key: type(value).__name__ for key, value in profiles.items()}
            if isinstance(profiles, Mapping)
            else type(profiles).__name__
        )
        raise TypeError(f"profiles must be a dict of LayerProfile; got {types}")
    if jax.process_count() == 1:
        return profiles
    layers = sorted(profiles)  # one packing order on every process
    _check_same_everywhere(_describe(profiles, layers))
    if not layers:
        return {}

    # The profiles are small (groups x units per layer), so each process gathers
    # every process's float32 sums on the host and adds them there in float64,
    # in process order. Unlike an on-device psum, this adds one rounding at
    # most (the final cast) and is bitwise identical on every process, and
    # process_allgather is JAX's public API for host-local values with any
    # number of local devices. The layers are packed into one flat array per
    # dtype, so the whole combine is two collectives however many layers.
    local = jax.device_get(
        {key: (profiles[key].sums, profiles[key].counts) for key in layers}
    )
    flat_sums = np.concatenate(
        [np.ravel(local[key][0]).astype(np.float32) for key in layers]
    )
    flat_counts = np.concatenate(
        [np.ravel(local[key][1]).astype(np.int32) for key in layers]
    )
    gathered = multihost_utils.process_allgather((flat_sums, flat_counts))
    total_sums = np.sum(gathered[0], axis=0, dtype=np.float64).astype(np.float32)
    total_counts = np.sum(gathered[1], axis=0, dtype=np.int64)
    if total_counts.size and total_counts.max() > _INT32_MAX:
        raise ValueError(
            f"combined count {int(total_counts.max())} exceeds the int32 range "
            f"(max {_INT32_MAX}); expected fewer inputs per group"
        )

    combined = {}
    sums_start = counts_start = 0
    for key in layers:
        sums, counts = local[key]
        sums_stop, counts_stop = sums_start + sums.size, counts_start + counts.size
        combined[key] = dataclasses.replace(
            profiles[key],
            sums=jnp.asarray(total_sums[sums_start:sums_stop].reshape(sums.shape)),
            counts=jnp.asarray(
                total_counts[counts_start:counts_stop]
                .astype(np.int32)
                .reshape(counts.shape)
            ),
        )
        sums_start, counts_start = sums_stop, counts_stop
    return {key: combined[key] for key in profiles}


def _describe(profiles: Mapping[str, LayerProfile], layers: list[str]) -> list[dict]:
    """What must agree across processes, one JSON-able entry per layer."""
    return [
        {
            "key": key,
            "layer": profiles[key].layer,
            "group names": list(profiles[key].group_names),
            "sums shape": list(np.shape(profiles[key].sums)),
            "sums dtype": str(profiles[key].sums.dtype),
            "counts shape": list(np.shape(profiles[key].counts)),
            "counts dtype": str(profiles[key].counts.dtype),
        }
        for key in layers
    ]


def _check_same_everywhere(description: list[dict]) -> None:
    """Gather every process's description; raise the same error on all if any differs.

    Two small collectives (the lengths, then the padded bytes) so that each
    process sees every description and can name the first difference.
    """
    encoded = np.frombuffer(json.dumps(description).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.int32(encoded.size))
    padded = np.zeros(int(np.max(lengths)), np.uint8)
    padded[: encoded.size] = encoded
    gathered = multihost_utils.process_allgather(padded)
    descriptions = [
        json.loads(bytes(row[:length]).decode())
        for row, length in zip(np.asarray(gathered), np.asarray(lengths), strict=True)
    ]
    reference = descriptions[0]
    for index, other in enumerate(descriptions[1:], start=1):
        mismatch = _first_mismatch(reference, other)
        if mismatch is not None:
            subject, on_0, on_other = mismatch
            raise ValueError(
                f"combine_profiles: {subject} {on_other!r} on process {index} but "
                f"{on_0!r} on process 0; expected the same on every process"
            )


def _first_mismatch(
    reference: list[dict], other: list[dict]
) -> tuple[str, object, object] | None:
    """``(subject, reference value, other value)`` of the first difference."""
    keys = [entry["key"] for entry in reference]
    other_keys = [entry["key"] for entry in other]
    if keys != other_keys:
        return "layers are", keys, other_keys
    for entry, other_entry in zip(reference, other, strict=True):
        for field, value in entry.items():
            if other_entry[field] != value:
                return (
                    f"layer {entry['key']!r} has {field}",
                    value,
                    other_entry[field],
                )
    return None
