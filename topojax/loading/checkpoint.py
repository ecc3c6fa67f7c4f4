"""Restore an Orbax checkpoint into a model, after checking that it fits.

The checkpoint's metadata (paths and shapes, no arrays) is compared with the
model's state before anything is read, so that a checkpoint of another
architecture fails with one line naming the first mismatched parameter path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flax.core
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from topojax.loading.factory import ModelParts

__all__ = ["restore_checkpoint"]

KeyPath = tuple[str, ...]


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _shapes(tree: Any) -> dict[KeyPath, tuple[int, ...]]:
    """``{path: shape}`` of every leaf, keys as strings, in flattening order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        tuple(_key_name(key) for key in path): _leaf_shape(leaf) for path, leaf in flat
    }


def _leaf_shape(leaf: Any) -> tuple[int, ...]:
    # Arrays and Orbax's array metadata have a shape; scalars (a saved step) not.
    return tuple(leaf.shape) if hasattr(leaf, "shape") else ()


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """One way the model's state may be stored in a checkpoint."""

    target: Any  # what to restore into: the model's arrays in the stored form
    ignored: Callable[[KeyPath], bool]  # checkpoint paths allowed in addition
    display: Callable[[KeyPath], str]  # a path as the user knows it
    rebuild: Callable[[Any], ModelParts]  # restored target -> new parts


def _dotted(path: KeyPath) -> str:
    return ".".join(path)


def _nnx_candidates(parts: ModelParts) -> list[_Candidate]:
    model = parts.model
    rng_paths = set(_shapes(nnx.state(model, nnx.RngState)))
    pure_rng_paths = {path[:-1] for path in rng_paths if path[-1:] == ("value",)}
    state = nnx.state(model, nnx.Not(nnx.RngState))

    def rebuild_state(restored):
        nnx.update(model, jax.tree.map(jnp.asarray, restored))
        return parts

    def rebuild_pure(restored):
        new_state = nnx.state(model, nnx.Not(nnx.RngState))
        nnx.replace_by_pure_dict(new_state, jax.tree.map(jnp.asarray, restored))
        nnx.update(model, new_state)
        return parts

    def strip_value(path: KeyPath) -> str:
        return _dotted(path[:-1] if path[-1:] == ("value",) else path)

    return [
        # nnx.state(model), as saved by the Flax NNX checkpointing guide
        _Candidate(state, rng_paths.__contains__, strip_value, rebuild_state),
        # nnx.to_pure_dict(nnx.state(model))
        _Candidate(
            nnx.to_pure_dict(state),
            pure_rng_paths.__contains__,
            _dotted,
            rebuild_pure,
        ),
    ]


def _linen_candidates(parts: ModelParts) -> list[_Candidate]:
    variables = flax.core.unfreeze(parts.variables)
    collections = set(variables)

    def rebuild(restored):
        return dataclasses.replace(
            parts, variables=jax.tree.map(jnp.asarray, dict(restored))
        )

    candidates = [
        # the variables, alone or as fields of a train state (step, opt_state)
        _Candidate(
            variables,
            lambda path: bool(path) and path[0] not in collections,
            _dotted,
            rebuild,
        )
    ]
    if collections == {"params"}:
        candidates.append(  # the parameters alone
            _Candidate(
                variables["params"],
                lambda path: False,
                lambda path: _dotted(("params", *path)),
                lambda restored: rebuild({"params": restored}),
            )
        )
    return candidates


def _mismatches(
    candidate: _Candidate, stored: dict[KeyPath, tuple[int, ...]]
) -> tuple[list[str], int]:
    """Messages for every mismatch, in model order, and the number of matches."""
    wanted = _shapes(candidate.target)
    problems = []
    matched = 0
    for path, shape in wanted.items():
        name = candidate.display(path)
        if path not in stored:
            problems.append(f"the model's {name!r} is missing from the checkpoint")
        elif stored[path] != shape:
            problems.append(
                f"{name!r} has shape {stored[path]} in the checkpoint but {shape} "
                "in the model"
            )
        else:
            matched += 1
    for path in stored:
        if path not in wanted and not candidate.ignored(path):
            problems.append(
                f"the checkpoint holds {candidate.display(path)!r}, which the "
                "model does not have"
            )
    return problems, matched


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Orbax logs routine warnings through absl; keep stderr to our messages."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _item_directory(directory: Path, ocp: Any) -> Path:
    """The directory of one PyTree checkpoint inside ``directory``."""
    if not directory.exists():
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    if not directory.is_dir():
        raise NotADirectoryError(
            f"checkpoint {directory} is a file; expected an Orbax checkpoint directory"
        )
    if (directory / "_METADATA").is_file():
        return directory
    step_directory = directory
    steps = ocp.step.checkpoint_steps_paths(directory)
    if steps:
        step_directory = max(
            steps, key=lambda path: ocp.step.step_from_checkpoint_name(path.name)
        )
        step_directory = Path(str(step_directory))
    items = sorted(
        path.name
        for path in step_directory.iterdir()
        if path.is_dir() and (path / "_METADATA").is_file()
    )
    if len(items) == 1 or "default" in items:
        return step_directory / (items[0] if len(items) == 1 else "default")
    if items:
        raise ValueError(
            f"checkpoint step {step_directory} holds several items {items}; pass "
            f"the directory of the one holding the model, e.g. "
            f"{step_directory / items[0]}"
        )
    raise ValueError(
        f"{directory} is not an Orbax checkpoint; expected a CheckpointManager "
        "directory (numbered step sub-directories; the latest is restored) or "
        "one checkpoint's directory (holding a _METADATA file)"
    )


def restore_checkpoint(parts: ModelParts, directory: str | os.PathLike) -> ModelParts:
    """Read an Orbax checkpoint into the model, after checking that it fits.

    ``directory`` is a ``CheckpointManager`` directory (the latest finished step
    is restored), one step's directory, or one checkpoint's directory (as
    written by ``ocp.StandardCheckpointer().save``). The checkpoint's metadata
    (paths and shapes, no arrays) is compared with the model's state first, in
    any of these forms:

    - NNX: ``nnx.state(model)`` or ``nnx.to_pure_dict(nnx.state(model))``; RNG
      state is neither needed nor restored (capture runs in inference mode).
    - Linen: the ``variables``, alone or as fields of a saved train state
      (other top-level entries such as ``step`` and ``opt_state`` are
      ignored); or, for variables holding only ``"params"``, the parameters
      alone.

    Only paths and shapes must match; values are cast to the model's dtypes.
    Needs the optional ``orbax-checkpoint`` package.

    Args:
        parts: the model from `load_factory`; an NNX module is updated in place
            (``nnx.update``).
        directory: the checkpoint directory.

    Returns:
        The parts with the restored state (NNX: the same module; Linen: new
        variables).

    Raises:
        ImportError: ``orbax-checkpoint`` is not installed.
        FileNotFoundError: ``directory`` does not exist.
        NotADirectoryError: ``directory`` is a file.
        ValueError: not an Orbax checkpoint, unreadable, or its paths or shapes
            differ from the model's: the message names the first mismatched
            parameter path (in the model's order) and the number of mismatches.
    """
    try:
        import orbax.checkpoint as ocp  # optional: only the CLI's --checkpoint
    except ImportError as error:
        raise ImportError(
            "restoring a checkpoint needs the optional package orbax-checkpoint "
            "(pip install orbax-checkpoint)"
        ) from error
    with _quiet_orbax():
        item = _item_directory(Path(directory), ocp)
        try:
            with ocp.PyTreeCheckpointer() as checkpointer:
                metadata = checkpointer.metadata(item)
        except Exception as error:  # orbax raises many kinds on a damaged file
            raise ValueError(
                f"cannot read the Orbax checkpoint metadata in {item}: "
                f"{type(error).__name__}: {error}"
            ) from error
        tree = getattr(metadata, "item_metadata", metadata)
        tree = getattr(tree, "tree", tree)
        stored = _shapes(tree)
        candidates = (
            _nnx_candidates(parts)
            if isinstance(parts.model, nnx.Module)
            else _linen_candidates(parts)
        )
        checked = [(_mismatches(c, stored), c) for c in candidates]
        fitting = [c for (problems, _), c in checked if not problems]
        if not fitting:
            (problems, _), _ = max(checked, key=lambda pair: pair[0][1])
            extra = f" (1 of {len(problems)} mismatches)" if len(problems) > 1 else ""
            raise ValueError(
                f"checkpoint {item} does not match the model: {problems[0]}{extra}"
            )
        candidate = fitting[0]
        abstract = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype),
            candidate.target,
        )
        restore_args = jax.tree.map(
            lambda leaf: ocp.RestoreArgs(restore_type=np.ndarray, dtype=leaf.dtype),
            candidate.target,
        )
        try:
            with ocp.PyTreeCheckpointer() as checkpointer:
                restored = checkpointer.restore(
                    item,
                    args=ocp.args.PyTreeRestore(
                        item=abstract, restore_args=restore_args, partial_restore=True
                    ),
                )
        except Exception as error:
            raise ValueError(
                f"cannot restore the Orbax checkpoint in {item}: "
                f"{type(error).__name__}: {error}"
            ) from error
    return candidate.rebuild(restored)
