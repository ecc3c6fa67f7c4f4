"""Import a user's model factory and check the model it returns.

`load_factory` imports ``path/to/model.py:make_model`` or
``package.module:make_model`` (like ``uvicorn main:app``), calls it with no
arguments and checks what it returns (`FACTORY_CONTRACT`); `resolve_layers`
and `output_shape` trace the model abstractly on an example input to check it
before anything is computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

from topojax.capture import (
    list_layers,
    make_capture_with_output,
    post_activation_layers,
)

__all__ = [
    "FACTORY_CONTRACT",
    "ModelParts",
    "load_factory",
    "output_shape",
    "resolve_layers",
]

FACTORY_CONTRACT = (
    "the factory takes no arguments and returns a flax.nnx.Module, a "
    "(linen_module, variables) pair, or (module, variables, apply_kwargs) with "
    "the forward pass's keyword arguments, e.g. (net, variables, "
    '{"train": False}) (variables None for an NNX module)'
)
"""What a factory must return, in words (used in error messages and help)."""

_SHOWN = 20  # names listed in an error message


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """A model as `topojax.analyze` takes it.

    Attributes:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        variables: Linen: the model's variables (``{"params": ...}``, plus
            e.g. ``"batch_stats"``); ``None`` for an NNX module.
        apply_kwargs: keyword arguments of the forward pass, e.g.
            ``{"train": False}``.
    """

    model: Any
    variables: Any = None
    apply_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _split_spec(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str):
        raise TypeError(f"factory must be a str such as 'model.py:make'; got {spec!r}")
    location, _, name = spec.rpartition(":")
    if not location or not name.isidentifier():
        raise ValueError(
            f"factory {spec!r} is not FILE.py:FUNCTION or MODULE:FUNCTION; "
            "expected e.g. models/mlp.py:make_model or mypackage.models:make_model"
        )
    return location, name


def _is_file_location(location: str) -> bool:
    return location.endswith(".py") or "/" in location or os.sep in location


@contextlib.contextmanager
def _importing_from(directory: Path) -> Iterator[None]:
    """``directory`` first on ``sys.path`` and no ``__pycache__`` written."""
    entry = str(directory)
    sys.path.insert(0, entry)
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # reading a model must not write beside it
    try:
        yield
    finally:
        sys.dont_write_bytecode = writes_bytecode
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_file(location: str, spec: str) -> types.ModuleType:
    path = Path(location)
    if path.is_dir() or not path.is_file():
        raise FileNotFoundError(
            f"factory file not found: {location} (from {spec!r}); expected an "
            "existing Python file, as in models/mlp.py:make_model"
        )
    path = path.resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(str(path).encode() + b"\0" + source).hexdigest()[:16]
    # The model's classes need their module registered in sys.modules (capture
    # patches the activations imported there). A file loaded again unchanged
    # reuses its module, as `import` does: replacing it would orphan the
    # classes of models made earlier; a changed file gets a new name.
    module_name = f"topojax_factory_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot import {location} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        with _importing_from(path.parent):
            module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ValueError(
            f"importing {location} failed: {type(error).__name__}: {error}"
        ) from error
    return module


def _import_module(location: str, spec: str) -> types.ModuleType:
    try:
        with _importing_from(Path.cwd()):
            return importlib.import_module(location)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if location == missing or location.startswith(missing + "."):
            raise ValueError(
                f"no module {location!r} (from {spec!r}); expected an importable "
                "module (run from the directory holding it, or install it) or a "
                "file path such as models/mlp.py:make_model"
            ) from error
        raise ValueError(
            f"importing {location} failed: {type(error).__name__}: {error}"
        ) from error
    except Exception as error:
        raise ValueError(
            f"importing {location} failed: {type(error).__name__}: {error}"
        ) from error


def _model_parts(result: Any, spec: str) -> ModelParts:
    got = type(result).__name__
    if isinstance(result, nnx.Module):
        return ModelParts(result)
    if isinstance(result, type) and issubclass(result, nnx.Module | linen.Module):
        raise TypeError(
            f"factory {spec!r} returned the class {result.__name__}, not an "
            f"instance; {FACTORY_CONTRACT}"
        )
    if isinstance(result, linen.Module):
        raise TypeError(
            f"factory {spec!r} returned a Linen module without its variables; "
            f"{FACTORY_CONTRACT}"
        )
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        length = f" of {len(result)}" if isinstance(result, tuple) else ""
        raise TypeError(
            f"factory {spec!r} returned a {got}{length}, not a model; "
            f"{FACTORY_CONTRACT}"
        )
    model, variables, *rest = result
    apply_kwargs = rest[0] if rest else {}
    if not isinstance(apply_kwargs, Mapping) or not all(
        isinstance(name, str) for name in apply_kwargs
    ):
        raise TypeError(
            f"factory {spec!r}: apply_kwargs (the third element) must be a dict "
            f"of keyword arguments, e.g. {{'train': False}}; got "
            f"{type(apply_kwargs).__name__}"
        )
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError(
                f"factory {spec!r} returned an NNX module with variables of type "
                f"{type(variables).__name__}; an NNX module holds its own state: "
                "return the module alone, or (module, None, apply_kwargs)"
            )
        return ModelParts(model, None, dict(apply_kwargs))
    if not isinstance(model, linen.Module):
        raise TypeError(
            f"factory {spec!r} returned a tuple whose first element is a "
            f"{type(model).__name__}, not a Flax module; {FACTORY_CONTRACT}"
        )
    if not isinstance(variables, Mapping) or not variables:
        raise TypeError(
            f"factory {spec!r}: the Linen module's variables must be the dict from "
            f"module.init(...) ({{'params': ...}}); got {type(variables).__name__}"
        )
    return ModelParts(model, variables, dict(apply_kwargs))


def load_factory(spec: str) -> ModelParts:
    """Import a model factory, call it and check what it returns.

    The factory is named like ``uvicorn main:app``: ``FILE.py:FUNCTION`` (a
    path, imported as a fresh module with its directory first on
    ``sys.path``, so it can import its neighbours) or ``MODULE:FUNCTION`` (an
    importable module; the current directory is searched first). It takes no
    arguments and returns one of (see `FACTORY_CONTRACT`):

    - a ``flax.nnx.Module``;
    - ``(linen_module, variables)``;
    - ``(module, variables, apply_kwargs)``: the forward pass's keyword
      arguments, e.g. ``{"train": False}``; ``variables`` is ``None`` for an
      NNX module.

    Args:
        spec: ``"path/to/model.py:make_model"`` or ``"pkg.models:make_model"``.

    Returns:
        The checked `ModelParts`.

    Raises:
        FileNotFoundError: the factory file does not exist.
        ValueError: ``spec`` is malformed, the module cannot be imported (the
            message names the error), it has no such function, or the factory
            raised (its error type and message are named).
        TypeError: the attribute is not callable, or the factory returned
            something that is not a model as described above.

    Example:
        A file ``model.py``::

            from flax import nnx

            class MLP(nnx.Module):
                def __init__(self, rngs):
                    self.hidden = nnx.Linear(64, 32, rngs=rngs)
                    self.out = nnx.Linear(32, 10, rngs=rngs)

                def __call__(self, x):
                    return self.out(nnx.relu(self.hidden(x.reshape(len(x), -1))))

            def make_model():
                return MLP(nnx.Rngs(0))

        >>> parts = load_factory("model.py:make_model")  # doctest: +SKIP
    """
    location, name = _split_spec(spec)
    if _is_file_location(location):
        module = _import_file(location, spec)
    else:
        module = _import_module(location, spec)
    if not hasattr(module, name):
        functions = sorted(
            key
            for key, value in vars(module).items()
            if callable(value)
            and not key.startswith("_")
            and getattr(value, "__module__", None) == module.__name__
        )
        raise ValueError(
            f"no function {name!r} in {location}; callables defined there: "
            f"{functions[:_SHOWN]}"
        )
    factory = getattr(module, name)
    if not callable(factory):
        raise TypeError(
            f"{name!r} in {location} is of type {type(factory).__name__}, not a "
            f"function; {FACTORY_CONTRACT}"
        )
    source = getattr(module, "__file__", None)
    directory = Path(source).parent if source else Path.cwd()
    try:
        with _importing_from(directory):
            result = factory()
    except Exception as error:
        raise ValueError(
            f"factory {spec!r} raised {type(error).__name__}: {error}"
        ) from error
    return _model_parts(result, spec)


def resolve_layers(
    parts: ModelParts, example: Any, layers: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Check layer names against the model, or choose the default ones.

    Traces the forward pass abstractly (``jax.eval_shape``): nothing is
    computed.

    Args:
        parts: the model (see `load_factory`).
        example: one or a few inputs ``(batch, ...)``; only shape and dtype are
            used.
        layers: layer names (see `topojax.capture.list_layers`); ``None``
            chooses every hidden post-activation layer
            (`topojax.capture.post_activation_layers`).

    Returns:
        The layer names, in the order given (or forward order).

    Raises:
        ValueError: the model does not run on ``example`` (the message names
            the input shape and the error), a layer name is unknown (the
            message lists the capturable layers), or, by default, the model
            has no hidden post-activation layer.
    """
    x = jnp.asarray(example)
    try:
        found = list_layers(
            parts.model, x, variables=parts.variables, **parts.apply_kwargs
        )
        chosen = (
            post_activation_layers(
                parts.model, x, variables=parts.variables, **parts.apply_kwargs
            )
            if layers is None
            else list(layers)
        )
    except Exception as error:
        message = " ".join(str(error).split())
        raise ValueError(
            f"the model does not run on inputs of shape {tuple(x.shape[1:])} "
            f"{x.dtype} (batch axis first): {type(error).__name__}: {message}"
        ) from error
    unknown = [name for name in chosen if name not in found]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; valid layers: {found}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layer names must be distinct; got {chosen}")
    if not chosen:
        raise ValueError(
            "the model has no hidden post-activation layer to analyse; name "
            f"layers explicitly, one of {found}"
        )
    return tuple(chosen)


def output_shape(
    parts: ModelParts, example: Any, layers: Sequence[str]
) -> tuple[int, ...]:
    """Shape of the model's output for ``example``, in inference mode.

    Traces the capture of ``layers`` abstractly (``jax.eval_shape``), as
    `topojax.analyze` runs the model: nothing is computed.

    Args:
        parts: the model (see `load_factory`).
        example: inputs ``(batch, ...)``; only shape and dtype are used.
        layers: layer names checked by `resolve_layers`.

    Returns:
        The output shape, e.g. ``(batch, n_classes)``.
    """
    capture_fn = make_capture_with_output(
        parts.model, layers, variables=parts.variables, **parts.apply_kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # analyze warns about these layers
        _, output = jax.eval_shape(capture_fn, jnp.asarray(example))
    return tuple(getattr(output, "shape", ()))
