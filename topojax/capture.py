"""Pure, jit-compiled capture of intermediate layer activations from Flax models.

Works with Flax NNX modules (``flax.nnx.Module``) and Flax Linen modules
(``flax.linen.Module`` plus their ``variables``). A *layer* is any submodule whose
``__call__`` returns one array with the batch as leading axis; it is named by its
path from the root module, joined with ``"."``:

- NNX: the attribute path, e.g. ``"conv1"``, ``"layers.0"``, ``"block.bn"``.
- Linen: the module path, e.g. ``"Dense_1"``, ``"block.Conv_0"``.

A submodule called several times in one forward pass (e.g. one shared
``Dropout``) gives one layer per call: ``"drop"``, ``"drop@1"``, ``"drop@2"``.
The root module itself is not a layer (its output is the model output).

Capture is pure: the model's state is a jit *argument*, never mutated.

- NNX models are captured in inference mode, through
  ``nnx.view(model, deterministic=True, use_running_average=True)``: Dropout is
  off and BatchNorm uses its running statistics; the user's model is unchanged.
- Linen models run ``model.apply(variables, x, **apply_kwargs)`` with no mutable
  collection, so the caller passes the inference flags their model uses
  (``train=False``, ``deterministic=True``); a forward pass that tries to update
  ``batch_stats`` raises Flax's error instead of silently changing state.

One program is compiled per (model structure, input shape). The same compiled
program serves new parameter values of the same structure, e.g. later training
checkpoints, through `make_state_capture`.

Submodule calls are intercepted only while the forward pass is *traced* (NNX:
the classes' ``__call__`` are wrapped for the duration of the trace; Linen:
``nn.intercept_methods``), so the compiled program has no Python overhead. Only
``__call__`` outputs are captured, not other methods. Do not trace captures of
the same NNX classes from several threads at once.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
from flax import linen, nnx

_SEPARATOR = "."
_REPEAT = "@"

Records = list[tuple[tuple[Any, ...], Any]]
CaptureFn = Callable[[Any], dict[str, jax.Array]]


# --------------------------------------------------------------------------- #
# Recording submodule outputs at trace time
# --------------------------------------------------------------------------- #


def _own_call(cls: type) -> Callable[..., Any] | None:
    """The ``__call__`` that instances of ``cls`` run (not the metaclass's)."""
    for klass in cls.__mro__:
        if "__call__" in klass.__dict__:
            return klass.__dict__["__call__"]
    return None


@contextlib.contextmanager
def _record_nnx_calls(model: nnx.Module) -> Iterator[Records]:
    """Record ``(path, output)`` of every NNX submodule ``__call__``, in call order.

    The ``__call__`` of each submodule class is wrapped for the duration of the
    context; a re-entrant call on the same instance (``super().__call__``) is
    recorded once, by the outermost call.
    """
    paths = {id(module): path for path, module in nnx.iter_modules(model) if path}
    records: Records = []
    active: set[int] = set()

    def wrap(call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def recording_call(self, *args, **kwargs):
            key = id(self)
            if key not in paths or key in active:
                return call(self, *args, **kwargs)
            active.add(key)
            try:
                output = call(self, *args, **kwargs)
            finally:
                active.discard(key)
            records.append((paths[key], output))
            return output

        return recording_call

    classes = {type(module) for _, module in nnx.iter_modules(model)}
    # Resolve every original first, so a subclass never wraps a wrapper.
    originals = {cls: _own_call(cls) for cls in classes}
    originals = {cls: call for cls, call in originals.items() if call is not None}
    own = {cls: cls.__dict__.get("__call__") for cls in originals}
    try:
        for cls, call in originals.items():
            cls.__call__ = wrap(call)
        yield records
    finally:
        for cls in originals:
            if own[cls] is None:
                del cls.__call__
            else:
                cls.__call__ = own[cls]


@contextlib.contextmanager
def _record_linen_calls() -> Iterator[Records]:
    """Record ``(path, output)`` of every Linen submodule ``__call__``."""
    records: Records = []
    active: set[int] = set()

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        key = id(module)
        if context.method_name != "__call__" or not module.path or key in active:
            return next_fun(*args, **kwargs)
        active.add(key)
        try:
            output = next_fun(*args, **kwargs)
        finally:
            active.discard(key)
        records.append((tuple(module.path), output))
        return output

    with linen.intercept_methods(interceptor):
        yield records


def _name_records(records: Records) -> dict[str, Any]:
    """Join paths with ``"."``; repeated calls of one module get ``"@k"``."""
    calls: collections.Counter[str] = collections.Counter()
    named = {}
    for path, output in records:
        base = _SEPARATOR.join(str(part) for part in path)
        index = calls[base]
        calls[base] += 1
        named[base if index == 0 else f"{base}{_REPEAT}{index}"] = output
    return named


def _batch_size(x: Any) -> int:
    leaves = jax.tree.leaves(x)
    if not leaves or any(getattr(leaf, "ndim", 0) < 1 for leaf in leaves):
        raise ValueError(
            "x must be an array (or pytree of arrays) with a leading batch axis; "
            f"got {type(x).__name__} with leaf shapes "
            f"{[getattr(leaf, 'shape', ()) for leaf in leaves]}"
        )
    return leaves[0].shape[0]


def _is_capturable(output: Any, batch_size: int) -> bool:
    return (
        isinstance(output, jax.Array)
        and output.ndim >= 1
        and output.shape[0] == batch_size
    )


# --------------------------------------------------------------------------- #
# Model kinds: a pure forward pass state, x -> recorded outputs
# --------------------------------------------------------------------------- #


def _forward(
    model: Any, variables: Any, apply_kwargs: dict[str, Any]
) -> tuple[Callable[[Any, Any], dict[str, Any]], Any]:
    """A pure ``run(state, x) -> {name: output}`` and the model's current state.

    Raises:
        TypeError: ``model`` is neither an NNX nor a Linen module.
        ValueError: a Linen model without ``variables``.
    """
    if isinstance(model, nnx.Module):
        inference = nnx.view(
            model,
            deterministic=True,
            use_running_average=True,
            raise_if_not_found=False,
        )
        graphdef, state = nnx.split(inference)

        def run_nnx(state, x):
            module = nnx.merge(graphdef, state)
            with _record_nnx_calls(module) as records:
                module(x, **apply_kwargs)
            return _name_records(records)

        return run_nnx, state if variables is None else variables
    if isinstance(model, linen.Module):
        if variables is None:
            raise ValueError(
                "a Linen model needs its variables: pass variables=model.init(...) "
                "(a dict with 'params' and e.g. 'batch_stats')"
            )

        def run_linen(variables, x):
            with _record_linen_calls() as records:
                model.apply(variables, x, **apply_kwargs)
            return _name_records(records)

        return run_linen, variables
    raise TypeError(
        "model must be a flax.nnx.Module or a flax.linen.Module; "
        f"got {type(model).__name__}"
    )


def _check_layer_names(layers: str | Sequence[str]) -> tuple[str, ...]:
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    if not names:
        raise ValueError("layers must name at least one layer; got an empty list")
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(f"layer names must be strings; got {bad!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"layer names must be unique; repeated: {duplicates}")
    return names


def _select(
    outputs: dict[str, Any], names: tuple[str, ...], batch_size: int
) -> dict[str, jax.Array]:
    valid = [n for n, out in outputs.items() if _is_capturable(out, batch_size)]
    unknown = [name for name in names if name not in outputs]
    if unknown:
        raise ValueError(
            f"unknown layer(s) {unknown}; capturable layers in forward order: {valid}"
        )
    wrong = [name for name in names if name not in valid]
    if wrong:
        kinds = {
            name: getattr(outputs[name], "shape", type(outputs[name]).__name__)
            for name in wrong
        }
        raise ValueError(
            f"layer(s) {kinds} do not return one array with the batch "
            f"({batch_size}) as leading axis; capturable layers: {valid}"
        )
    return {name: outputs[name] for name in names}


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def list_layers(
    model: Any, x: Any, *, variables: Any = None, **apply_kwargs: Any
) -> list[str]:
    """Names of the capturable layers of ``model``, in forward (output) order.

    Traces one forward pass abstractly (``jax.eval_shape``): nothing is computed.

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        x: an example input ``(batch, ...)``; only its shape and dtype are used.
        variables: Linen: the model's variables (required). NNX: optional
            ``nnx.State`` to use instead of the model's own.
        **apply_kwargs: keyword arguments of the forward pass, e.g. ``train=False``.

    Returns:
        Layer names such as ``["layers.0", "layers.1"]`` (NNX) or
        ``["block.Conv_0", "Dense_0"]`` (Linen): submodules whose ``__call__``
        returns one array with the batch as leading axis, in the order their
        outputs are produced.

    Raises:
        TypeError: ``model`` is not a Flax module.
        ValueError: Linen model without ``variables``.
    """
    run, state = _forward(model, variables, apply_kwargs)
    batch_size = _batch_size(x)
    names: list[str] = []

    def trace(state, x):
        outputs = run(state, x)
        names.extend(n for n, o in outputs.items() if _is_capturable(o, batch_size))

    jax.eval_shape(trace, state, x)
    return names


@dataclasses.dataclass(frozen=True)
class StateCapture:
    """Captures ``layers`` for a given model state: ``fn(state, x) -> dict``.

    A value (no mutable state): the layer names and the compiled program.

    Attributes:
        layers: the captured layer names, in the order the dict returns them.
        compiled: the jitted ``(state, x) -> tuple of activations`` (in
            ``layers`` order); ``compiled._cache_size()`` counts compilations.
    """

    layers: tuple[str, ...]
    compiled: Callable[[Any, Any], tuple[jax.Array, ...]]

    def __call__(self, state: Any, x: Any) -> dict[str, jax.Array]:
        """Activations ``{layer: (batch, ...)}`` of ``x`` under ``state``."""
        return dict(zip(self.layers, self.compiled(state, x), strict=True))


def make_state_capture(
    model: Any,
    layers: str | Sequence[str],
    *,
    variables: Any = None,
    **apply_kwargs: Any,
) -> tuple[StateCapture, Any]:
    """A jitted ``fn(state, x) -> {layer: activations}`` and the model's state.

    Use it to capture several checkpoints of one architecture with one compiled
    program: ``fn(nnx.state(checkpoint_model), x)`` (NNX) or
    ``fn(checkpoint_variables, x)`` (Linen) reuses the compilation as long as
    the state has the same structure and shapes.

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        layers: one layer name or a sequence of them (see `list_layers`).
        variables: Linen: the model's variables (required). NNX: optional
            ``nnx.State`` to return instead of the model's own.
        **apply_kwargs: static keyword arguments of the forward pass, e.g.
            ``train=False`` for a Linen model with BatchNorm and Dropout.

    Returns:
        ``(fn, state)``: ``fn(state, x)`` returns a dict mapping each requested
        layer name (in the order given) to its activations ``(batch, ...)``,
        e.g. ``(batch, n_units)`` or ``(batch, height, width, channels)``.
        ``state`` is the NNX ``nnx.State`` (in inference mode) or the Linen
        ``variables``.

    Raises:
        TypeError: ``model`` is not a Flax module, or a layer name is not a str.
        ValueError: empty or repeated layer names, Linen model without
            ``variables``. Unknown layer names raise a ValueError listing the
            capturable layers at the first call, while tracing (before any
            compilation or compute).
    """
    names = _check_layer_names(layers)
    run, state = _forward(model, variables, apply_kwargs)

    @jax.jit
    def capture_arrays(state, x):
        selected = _select(run(state, x), names, _batch_size(x))
        return tuple(selected[name] for name in names)

    return StateCapture(names, capture_arrays), state


def make_capture(
    model: Any,
    layers: str | Sequence[str],
    *,
    variables: Any = None,
    **apply_kwargs: Any,
) -> jax.tree_util.Partial:
    """A jitted ``fn(x) -> {layer: activations}`` for the model's current state.

    The state is an argument of the compiled program, not a constant baked into
    it: the result is ``jax.tree_util.Partial(capture_state, state)`` where
    ``capture_state`` is the `StateCapture` of `make_state_capture`
    (``fn.func``, to call with another state of the same structure;
    ``fn.func.compiled._cache_size()`` counts compilations).

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        layers: one layer name or a sequence of them (see `list_layers`).
        variables: Linen: the model's variables (required). NNX: optional state.
        **apply_kwargs: static keyword arguments of the forward pass.

    Returns:
        ``fn`` with ``fn(x)`` -> dict mapping each layer name to its activations
        ``(batch, ...)``.

    Raises:
        See `make_state_capture`.

    Example:
        >>> fn = make_capture(model, ["layers.0", "layers.1"])  # doctest: +SKIP
        >>> fn(x)["layers.0"].shape  # doctest: +SKIP
        (32, 64)
    """
    capture_state, state = make_state_capture(
        model, layers, variables=variables, **apply_kwargs
    )
    return jax.tree_util.Partial(capture_state, state)


def capture(
    model: Any,
    x: Any,
    layers: str | Sequence[str],
    *,
    variables: Any = None,
    **apply_kwargs: Any,
) -> dict[str, jax.Array]:
    """One-off capture: ``make_capture(model, layers, ...)(x)``.

    Compiles every time it is called; for repeated use keep the function from
    `make_capture`.

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        x: input ``(batch, ...)``.
        layers: one layer name or a sequence of them.
        variables: Linen: the model's variables (required). NNX: optional state.
        **apply_kwargs: static keyword arguments of the forward pass.

    Returns:
        Dict mapping each layer name to its activations ``(batch, ...)``.
    """
    return make_capture(model, layers, variables=variables, **apply_kwargs)(x)
