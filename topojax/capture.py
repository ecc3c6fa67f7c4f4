"""Pure, jit-compiled capture of intermediate layer activations from Flax models.

Works with Flax NNX modules (``flax.nnx.Module``) and Flax Linen modules
(``flax.linen.Module`` plus their ``variables``). A *layer* is one array with the
batch as leading axis produced in the forward pass, either

- the output of a submodule's ``__call__``, named by its path from the root
  module, joined with ``"."``: NNX the attribute path (``"conv1"``,
  ``"layers.0"``, ``"block.bn"``), Linen the module path (``"Dense_1"``,
  ``"block.Conv_0"``); or
- the output of an *activation function* called in the forward pass (see
  `ACTIVATIONS`: ``relu``, ``gelu``, ``softmax``, ``tanh``, ...), reached as
  ``jax.nn.relu``, ``nnx.relu``, ``nn.relu`` (Linen), ``jnp.tanh`` or a name
  imported from those (``from jax.nn import relu``) into a module that defines
  one of the model's classes. It is named ``<source>.<function>`` where
  ``<source>`` is the path of the submodule whose output is the activation's
  input (``h = nnx.relu(self.hidden1(x))`` gives ``"hidden1.relu"``; Linen
  ``nn.relu(nn.Dense(4)(x))`` in the root gives ``"Dense_0.relu"``), or, when
  the input is no submodule's output, the path of the submodule whose
  ``__call__`` calls the activation (``"block.relu"`` for ``nn.relu(y + x)``
  in ``block``; just ``"relu"`` in the root).

A name used several times in one forward pass (one shared ``Dropout`` called
twice, the same activation applied twice in one submodule) gives one layer per
call: ``"drop"``, ``"drop@1"``, ``"drop@2"``. Activation names share this
counter with submodule names, so every layer name is distinct. Names depend
only on the model's code, so they are the same at every call.

Not layers: the root module's own output (the model output), activation
functions called by JAX or Flax code (e.g. the softmax of attention weights
inside ``nnx.MultiHeadAttention``, ``jnp.tanh`` inside ``jax.nn.gelu``),
activation functions held as values before the forward pass (an element of
``nnx.Sequential``, ``self.act = nnx.relu``, a Linen field default), and module
methods other than ``__call__``.

Capturing the output of a Linear-like layer (``nnx.Linear``, ``LinearGeneral``,
``Conv``, ``ConvTranspose``, ``Einsum``; Linen ``Dense``, ``DenseGeneral``,
``Conv``, ``ConvTranspose``, ``Einsum``) that feeds an activation function
warns (``UserWarning``, once per layer and trace): that output is the
pre-activation, and the activation's layer is what the neurons emit.
`post_activation_layers` lists the post-activation layers of a model.

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

Calls are intercepted only while the forward pass is *traced*, so the compiled
program has no Python overhead: NNX submodule classes' ``__call__`` are wrapped
(Linen: ``nn.intercept_methods``), and the activation functions are replaced by
recording wrappers that return the original function's output, in the
namespaces ``jax.nn``, ``jax.numpy`` (``tanh``), ``flax.nnx``, ``flax.linen``
(and their activation submodules) and in the module globals of the model's
classes. Everything is restored when the trace ends, also on an error. Traces
that record are serialised by a lock, and calls from threads other than the
tracing one pass through unrecorded, so other threads may run JAX meanwhile.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen.activation
import flax.nnx.nn.activations
import jax
import jax.numpy as jnp
from flax import linen, nnx

_SEPARATOR = "."
_REPEAT = "@"

ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "relu6",
    "gelu",
    "silu",
    "swish",
    "sigmoid",
    "softmax",
    "log_softmax",
    "elu",
    "celu",
    "selu",
    "leaky_relu",
    "softplus",
    "hard_tanh",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "log_sigmoid",
    "soft_sign",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "mish",
    "glu",
    "tanh",
)
"""Names of the activation functions whose outputs are layers (where the
namespace defines them)."""

# Namespaces whose activation attributes are patched during a trace, and which
# of `ACTIVATIONS` each may hold (jax.numpy: only tanh is an activation).
_NAMESPACES: tuple[tuple[types.ModuleType, tuple[str, ...]], ...] = (
    (jax.nn, ACTIVATIONS),
    (jnp, ("tanh",)),
    (nnx, ACTIVATIONS),
    (flax.nnx.nn.activations, ACTIVATIONS),
    (linen, ACTIVATIONS),
    (flax.linen.activation, ACTIVATIONS),
)
# Code in these packages is library code: activations it calls are not layers,
# its module globals are never patched.
_LIBRARIES = frozenset({"jax", "jaxlib", "flax", "builtins"})
_LINEAR_LIKE = (
    nnx.Linear,
    nnx.LinearGeneral,
    nnx.Conv,
    nnx.ConvTranspose,
    nnx.Einsum,
    linen.Dense,
    linen.DenseGeneral,
    linen.Conv,
    linen.ConvTranspose,
    linen.Einsum,
)
_OUTPUT_ACTIVATIONS = frozenset({"softmax", "log_softmax"})
# Flax containers call the user's submodules; they are no layer with internals.
_CONTAINERS = (nnx.Sequential, linen.Sequential)


def _is_library(module_name: str) -> bool:
    return module_name.partition(".")[0] in _LIBRARIES


def _is_library_layer(module: Any) -> bool:
    """A Flax (or JAX) layer whose inner calls are its implementation details."""
    return _is_library(type(module).__module__) and not isinstance(module, _CONTAINERS)


# --------------------------------------------------------------------------- #
# Recording submodule and activation outputs at trace time
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(eq=False)
class _Call:
    """One recorded call, in output order: a submodule ``__call__`` or activation.

    Attributes:
        path: the layer's path before ``"@k"`` numbering; an activation's ends
            with its function name.
        output: what the call returned.
        start: how many calls were recorded before this one began (the calls
            recorded since then ran inside it).
        module: the submodule (None for an activation).
        function: the activation's name (None for a submodule).
        input: the activation's input array (None for a submodule).
        in_library: a submodule called by a Flax layer (e.g. the query
            projection of ``nnx.MultiHeadAttention``).
    """

    path: tuple[Any, ...]
    output: Any
    start: int
    module: Any = None
    function: str | None = None
    input: Any = None
    in_library: bool = False


class _Recorder:
    """The calls of one traced forward pass; lives for that trace only."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        # Enclosing submodule calls: (path, is a Flax/JAX class), innermost last.
        self.stack: list[tuple[tuple[Any, ...], bool]] = []
        # id(array) -> path of the last submodule that returned it. Recorded
        # outputs stay referenced by `calls`, so their ids are not reused.
        self.source: dict[int, tuple[Any, ...]] = {}
        self.activation_depth = 0

    def module_call(
        self, path: tuple[Any, ...], module: Any, call: Callable[[], Any]
    ) -> Any:
        start = len(self.calls)
        in_library = bool(self.stack) and self.stack[-1][1]
        self.stack.append((path, _is_library_layer(module)))
        try:
            output = call()
        finally:
            self.stack.pop()
        self.calls.append(_Call(path, output, start, module, in_library=in_library))
        self.source[id(output)] = path
        return output

    def activation_call(
        self, name: str, function: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        if self.activation_depth or (self.stack and self.stack[-1][1]):
            return function(*args, **kwargs)
        start = len(self.calls)
        self.activation_depth += 1
        try:
            output = function(*args, **kwargs)
        finally:
            self.activation_depth -= 1
        x = args[0] if args else kwargs.get("x")
        source = self.source.get(id(x))
        if source is None:
            source = self.stack[-1][0] if self.stack else ()
        self.calls.append(_Call((*source, name), output, start, function=name, input=x))
        return output


# One recorded trace at a time: the patches are process-wide, so a second
# thread's trace waits (calls from other threads pass through unrecorded).
_TRACE_LOCK = threading.RLock()


def _activation_wrapper(
    recorder: _Recorder, function: Callable[..., Any], name: str
) -> Callable[..., Any]:
    owner = threading.get_ident()

    def recording_activation(*args, **kwargs):
        # The caller's module decides: JAX/Flax internals are not layers; and
        # only the tracing thread's calls belong to this forward pass.
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if _is_library(caller) or threading.get_ident() != owner:
            return function(*args, **kwargs)
        return recorder.activation_call(name, function, args, kwargs)

    recording_activation.__name__ = getattr(function, "__name__", name)
    recording_activation.__qualname__ = recording_activation.__name__
    recording_activation.__doc__ = getattr(function, "__doc__", None)
    recording_activation.__wrapped__ = function
    recording_activation._topojax_recording = True
    return recording_activation


class _ActivationPatches:
    """Replaces activation functions by recording wrappers; `restore` undoes it."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.saved: list[tuple[dict[str, Any], str, Any]] = []
        self.patched: set[int] = set()
        self.names: dict[int, str] = {}
        for namespace, names in _NAMESPACES:
            for name in names:
                function = vars(namespace).get(name)
                if callable(function):
                    self.names.setdefault(id(function), name)

    def _patch(self, namespace: dict[str, Any], key: str, name: str) -> None:
        function = namespace[key]
        if getattr(function, "_topojax_recording", False):
            return  # an enclosing trace already records it
        self.saved.append((namespace, key, function))
        namespace[key] = _activation_wrapper(self.recorder, function, name)

    def patch_namespaces(self) -> None:
        for namespace, names in _NAMESPACES:
            attributes = vars(namespace)
            for name in names:
                if callable(attributes.get(name)):
                    self._patch(attributes, name, name)

    def patch_globals(self, cls: type) -> None:
        """Patch the activations imported into the modules defining ``cls``."""
        for klass in cls.__mro__:
            module = sys.modules.get(klass.__module__)
            if module is None or _is_library(module.__name__):
                continue
            namespace = vars(module)
            if id(namespace) in self.patched:
                continue
            self.patched.add(id(namespace))
            for key, value in list(namespace.items()):
                if id(value) in self.names and not key.startswith("__"):
                    name = key if key in ACTIVATIONS else self.names[id(value)]
                    self._patch(namespace, key, name)

    def restore(self) -> None:
        for namespace, key, function in reversed(self.saved):
            namespace[key] = function
        self.saved.clear()


@contextlib.contextmanager
def _record_activations(
    recorder: _Recorder, classes: Sequence[type]
) -> Iterator[_ActivationPatches]:
    """Record activation calls while inside; every patch is undone on exit."""
    patches = _ActivationPatches(recorder)
    try:
        patches.patch_namespaces()
        for cls in classes:
            patches.patch_globals(cls)
        yield patches
    finally:
        patches.restore()


def _own_call(cls: type) -> Callable[..., Any] | None:
    """The ``__call__`` that instances of ``cls`` run (not the metaclass's)."""
    for klass in cls.__mro__:
        if "__call__" in klass.__dict__:
            return klass.__dict__["__call__"]
    return None


@contextlib.contextmanager
def _record_nnx_calls(model: nnx.Module, recorder: _Recorder) -> Iterator[None]:
    """Record every NNX submodule ``__call__`` (and the activations they call).

    The ``__call__`` of each submodule class is wrapped for the duration of the
    context; a re-entrant call on the same instance (``super().__call__``) is
    recorded once, by the outermost call.
    """
    paths = {id(module): path for path, module in nnx.iter_modules(model) if path}
    active: set[int] = set()

    def wrap(call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def recording_call(self, *args, **kwargs):
            key = id(self)
            if key not in paths or key in active:
                return call(self, *args, **kwargs)
            active.add(key)
            try:
                return recorder.module_call(
                    tuple(paths[key]), self, lambda: call(self, *args, **kwargs)
                )
            finally:
                active.discard(key)

        return recording_call

    classes = {type(module) for _, module in nnx.iter_modules(model)}
    # Resolve every original first, so a subclass never wraps a wrapper.
    originals = {cls: _own_call(cls) for cls in classes}
    originals = {cls: call for cls, call in originals.items() if call is not None}
    own = {cls: cls.__dict__.get("__call__") for cls in originals}
    try:
        with _record_activations(recorder, sorted(classes, key=str)):
            for cls, call in originals.items():
                cls.__call__ = wrap(call)
            yield
    finally:
        for cls in originals:
            if own[cls] is None:
                del cls.__call__
            else:
                cls.__call__ = own[cls]


@contextlib.contextmanager
def _record_linen_calls(model: linen.Module, recorder: _Recorder) -> Iterator[None]:
    """Record every Linen submodule ``__call__`` (and the activations they call)."""
    active: set[int] = set()

    with _record_activations(recorder, [type(model)]) as patches:

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            key = id(module)
            if not module.path or key in active:
                return next_fun(*args, **kwargs)
            patches.patch_globals(type(module))
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            active.add(key)
            try:
                return recorder.module_call(
                    tuple(module.path), module, lambda: next_fun(*args, **kwargs)
                )
            finally:
                active.discard(key)

        with linen.intercept_methods(interceptor):
            yield


def _name_calls(calls: list[_Call]) -> dict[str, _Call]:
    """Join paths with ``"."``; repeated names get ``"@k"``."""
    counts: collections.Counter[str] = collections.Counter()
    named = {}
    for call in calls:
        base = _SEPARATOR.join(str(part) for part in call.path)
        index = counts[base]
        counts[base] += 1
        named[base if index == 0 else f"{base}{_REPEAT}{index}"] = call
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


def _pre_activation_warning(name: str, layers: dict[str, _Call]) -> str | None:
    """The warning for capturing ``name``, if it is a Linear feeding an activation."""
    call = layers[name]
    if not isinstance(call.module, _LINEAR_LIKE):
        return None
    for activation_name, activation in layers.items():
        if activation.function is not None and activation.input is call.output:
            return (
                f"layer {name!r} is the pre-activation output of a "
                f"{type(call.module).__name__} that feeds {activation.function}; "
                f"capture {activation_name!r} for what the neurons emit"
            )
    return None


def _post_activation_names(
    layers: dict[str, _Call], model_output: Any, batch_size: int
) -> list[str]:
    """The rule of `post_activation_layers`, on one traced forward pass."""
    calls = list(layers.values())
    final = {id(leaf) for leaf in jax.tree.leaves(model_output)}
    first: dict[int, int] = {}
    for index, call in enumerate(calls):
        first.setdefault(id(call.output), index)
    any_activation = any(call.function is not None for call in calls)

    def ends_in_activation(index: int, call: _Call) -> bool:
        return any(
            inner.function is not None and inner.output is call.output
            for inner in calls[call.start : index]
        )

    def is_candidate(index: int, call: _Call) -> bool:
        if not _is_capturable(call.output, batch_size) or id(call.output) in final:
            return False
        if call.function is not None:
            return not (
                call.function in _OUTPUT_ACTIVATIONS and id(call.input) in final
            )
        if call.in_library:
            return False
        return ends_in_activation(index, call) or not any_activation

    groups: dict[int, list[int]] = {}
    for index, call in enumerate(calls):
        if is_candidate(index, call):
            groups.setdefault(id(call.output), []).append(index)
    chosen = []
    for indices in groups.values():
        # Calls that began before the array first appeared produced it; later
        # ones (Dropout in inference, an identity) only passed it on.
        producers = [i for i in indices if calls[i].start <= first[id(calls[i].output)]]
        chosen.append(producers[-1] if producers else indices[0])
    names = list(layers)
    return [names[index] for index in sorted(chosen)]


# --------------------------------------------------------------------------- #
# Model kinds: a pure forward pass state, x -> recorded outputs
# --------------------------------------------------------------------------- #


def _forward(
    model: Any, variables: Any, apply_kwargs: dict[str, Any]
) -> tuple[Callable[[Any, Any], tuple[dict[str, _Call], Any]], Any]:
    """A pure ``run(state, x) -> ({name: call}, model output)`` and the state.

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
            recorder = _Recorder()
            with _TRACE_LOCK, _record_nnx_calls(module, recorder):
                output = module(x, **apply_kwargs)
            return _name_calls(recorder.calls), output

        return run_nnx, state if variables is None else variables
    if isinstance(model, linen.Module):
        if variables is None:
            raise ValueError(
                "a Linen model needs its variables: pass variables=model.init(...) "
                "(a dict with 'params' and e.g. 'batch_stats')"
            )

        def run_linen(variables, x):
            recorder = _Recorder()
            with _TRACE_LOCK, _record_linen_calls(model, recorder):
                output = model.apply(variables, x, **apply_kwargs)
            return _name_calls(recorder.calls), output

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


def _trace_capture(
    run: Callable[[Any, Any], tuple[dict[str, _Call], Any]],
    names: tuple[str, ...],
    state: Any,
    x: Any,
) -> tuple[dict[str, jax.Array], Any]:
    """One traced forward pass: ``({name: activations}, model output)``.

    Warns once per requested pre-activation layer (see `make_state_capture`).
    """
    layers, output = run(state, x)
    outputs = {name: call.output for name, call in layers.items()}
    selected = _select(outputs, names, _batch_size(x))
    for name in names:
        message = _pre_activation_warning(name, layers)
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=2)
    return selected, output


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def _traced_names(
    model: Any,
    x: Any,
    variables: Any,
    apply_kwargs: dict[str, Any],
    pick: Callable[[dict[str, _Call], Any, int], list[str]],
) -> list[str]:
    """``pick(layers, model_output, batch_size)`` of one abstract forward pass."""
    run, state = _forward(model, variables, apply_kwargs)
    batch_size = _batch_size(x)
    names: list[str] = []

    def trace(state, x):
        layers, model_output = run(state, x)
        names.extend(pick(layers, model_output, batch_size))

    jax.eval_shape(trace, state, x)
    return names


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
        Layer names such as ``["layers.0", "layers.0.relu", "layers.1"]`` (NNX)
        or ``["block.Conv_0", "block.Conv_0.relu", "Dense_0"]`` (Linen):
        submodule and activation outputs (see the module docstring for the
        names) that are one array with the batch as leading axis, in the
        order they are produced.

    Raises:
        TypeError: ``model`` is not a Flax module.
        ValueError: Linen model without ``variables``.
    """
    return _traced_names(
        model,
        x,
        variables,
        apply_kwargs,
        lambda layers, output, batch_size: [
            name
            for name, call in layers.items()
            if _is_capturable(call.output, batch_size)
        ],
    )


def post_activation_layers(
    model: Any, x: Any, *, variables: Any = None, **apply_kwargs: Any
) -> list[str]:
    """Names of the hidden layers that hold what neurons emit, in forward order.

    The layers `list_layers` reports, kept by this rule:

    1. Every activation output (``"hidden1.relu"``), and every submodule whose
       output is the output of an activation called inside it (a "Dense +
       ReLU" module such as ``"hidden1"`` with ``relu(self.linear(x))``).
       Other submodules (Linear, Conv, normalisation, attention, pooling
       modules) are dropped. If the forward pass calls no activation function
       that capture sees, every submodule is kept instead.
    2. Dropped: the model output (and any layer returning one of its arrays),
       ``softmax``/``log_softmax`` applied to the model output, and submodules
       called by a Flax layer (e.g. the projections inside
       ``nnx.MultiHeadAttention``).
    3. Layers returning the very same array keep one name: the outermost
       submodule among those that produced it (``"hidden1"`` rather than
       ``"hidden1.linear.relu"``), never a module that only passed it on
       (Dropout in inference mode).

    Traces one forward pass abstractly (``jax.eval_shape``): nothing is computed.

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        x: an example input ``(batch, ...)``; only its shape and dtype are used.
        variables: Linen: the model's variables (required). NNX: optional
            ``nnx.State`` to use instead of the model's own.
        **apply_kwargs: keyword arguments of the forward pass, e.g. ``train=False``.

    Returns:
        Layer names, a subset of `list_layers` in the same order, e.g.
        ``["hidden1.relu", "hidden2.gelu"]`` for
        ``out(gelu(hidden2(relu(hidden1(x)))))``. Empty if the model has no
        hidden layer.

    Raises:
        TypeError: ``model`` is not a Flax module.
        ValueError: Linen model without ``variables``.
    """
    return _traced_names(model, x, variables, apply_kwargs, _post_activation_names)


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

    Warns:
        UserWarning: at the first call (while tracing), once per requested
            layer that is the output of a Linear-like module (Linear, Conv,
            Dense, ...) fed into an activation function: it is the
            pre-activation; the message names the activation's layer.
    """
    names = _check_layer_names(layers)
    run, state = _forward(model, variables, apply_kwargs)

    @jax.jit
    def capture_arrays(state, x):
        selected, _ = _trace_capture(run, names, state, x)
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


def make_capture_with_output(
    model: Any,
    layers: str | Sequence[str],
    *,
    variables: Any = None,
    **apply_kwargs: Any,
) -> jax.tree_util.Partial:
    """`make_capture` that also returns the model's output, from one forward pass.

    Args:
        model: a ``flax.nnx.Module`` or a ``flax.linen.Module``.
        layers: one layer name or a sequence of them (see `list_layers`).
        variables: Linen: the model's variables (required). NNX: optional state.
        **apply_kwargs: static keyword arguments of the forward pass.

    Returns:
        ``fn`` with ``fn(x)`` -> ``({layer: activations (batch, ...)}, output)``
        where ``output`` is what the model returns (e.g. logits).

    Raises:
        See `make_state_capture`.
    """
    names = _check_layer_names(layers)
    run, state = _forward(model, variables, apply_kwargs)

    @jax.jit
    def capture_with_output(state, x):
        return _trace_capture(run, names, state, x)

    return jax.tree_util.Partial(capture_with_output, state)
