"""A bare predictor function as a model: ``model: {type: predictor, function: ..., params: ...}``.

The scenario names a function ``f(params, x)`` (``"module:name"``), its parameter blocks
``params: {name: shape}`` and the shape of one input. :func:`load_predictor` imports it,
checks it on abstract arrays (it must be jittable and return an array), discovers its
symmetry (docs/theory.md section 2.7, in float64 whatever the scenario's precision) and
returns a :class:`~sde_bias.models.Predictor`, on which every theory function works: Gram
matrix and ``log det G`` from the discovered generators, projectors, the balance law for the
symmetric elements of the algebra, the noise equilibrium (docs/theory.md sections 2.3-2.6).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .discovery import DiscoveryError, discover_symmetries
from .model_registry import ModelLoadError, import_object
from .models import Predictor
from .symmetry import symmetric_generators

MAX_PARAMS = 40
"""Largest parameter count of a discovered model: discovery solves for ``p^2`` unknowns
(an SVD of up to ``p^2 x p^2``, about a second at ``p = 40``)."""

DISCOVERY_SEED = 0
PROBE_SEED = 1


def _function(path: str | None, key: str):
    if path is None:
        return None
    fn = import_object(path, key)
    if not callable(fn):
        raise ModelLoadError(key, f"{path!r} is not callable")
    return fn


def abstract_call_tree(fn, *args):
    """``jax.eval_shape(fn, *args)`` (any output pytree) with the failure as one line in a
    ``ValueError``: a function that turns a traced array into a Python value is "not
    jittable"."""
    try:
        return jax.eval_shape(fn, *args)
    except jax.errors.JAXTypeError as e:
        raise ValueError(f"is not jittable ({type(e).__name__}: {_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - user code: any failure is reported in one line
        raise ValueError(f"fails ({type(e).__name__}: {_first_line(e)})") from None


def abstract_call(fn, *args) -> jax.ShapeDtypeStruct:
    """:func:`abstract_call_tree` for a function that must return one array."""
    out = abstract_call_tree(fn, *args)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"returns {type(out).__name__}, not one array")
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_predictor(
    function: str,
    params: dict[str, list[int]],
    input_shape: list[int],
    invariants: str | None = None,
    section: str | None = None,
) -> Predictor:
    """The :class:`~sde_bias.models.Predictor` of ``function(params, x)``, with its
    symmetry discovered at random parameters and inputs ``N(0, 1)``.

    Raises :class:`~sde_bias.model_registry.ModelLoadError` naming the key at fault
    (``function``, ``params``, ``invariants``, ``section``)."""
    fn = _function(function, "function")
    inv_fn = _function(invariants, "invariants")
    sec_fn = _function(section, "section")
    if sec_fn is not None and inv_fn is None:
        raise ModelLoadError("section", "a section inverts the invariants: give model.invariants too")
    shapes = tuple((name, tuple(int(n) for n in shape)) for name, shape in params.items())
    p = sum(math.prod(s) for _, s in shapes)
    if p > MAX_PARAMS:
        raise ModelLoadError("params", f"{p} parameters: symmetry discovery takes at most {MAX_PARAMS} ({p}^2 unknowns)")
    in_shape = tuple(int(n) for n in input_shape)

    zeros = {name: jax.ShapeDtypeStruct(s, jnp.float32) for name, s in shapes}
    x = jax.ShapeDtypeStruct(in_shape, jnp.float32)
    try:
        out = abstract_call(fn, zeros, x)
    except ValueError as e:
        shown = ", ".join(f"{n}: {list(s)}" for n, s in shapes)
        raise ModelLoadError("function", f"{function}(params, x) with params {{{shown}}} and x of shape {in_shape} {e}") from None
    if inv_fn is not None:
        try:
            abstract_call(inv_fn, zeros)
        except ValueError as e:
            raise ModelLoadError("invariants", f"{invariants}(params) {e}") from None

    def make(basis, charges, probes):
        return Predictor(fn, shapes, in_shape, tuple(out.shape), basis, charges, probes, inv_fn, sec_fn)

    empty = np.zeros((0, p, p))
    with jax.enable_x64(True):
        try:
            found = discover_symmetries(
                make(empty, empty, np.zeros((0,) + in_shape)).predict,
                p,
                lambda key, n: jax.random.normal(key, (n,) + in_shape, jnp.float64),
                jax.random.PRNGKey(DISCOVERY_SEED),
                dtype=jnp.float64,
            )
        except DiscoveryError as e:
            raise ModelLoadError("function", f"symmetry discovery failed: {_first_line(e)}") from None
        basis = np.asarray(found.basis, np.float64)
        charges = np.asarray(symmetric_generators(make(basis, empty, np.zeros((0,) + in_shape)), jnp.zeros((p,), jnp.float64)), np.float64)
    k = basis.shape[0]
    num_probes = max(2, math.ceil(max(p - k, 1) / max(math.prod(out.shape), 1)))
    probes = np.random.default_rng(PROBE_SEED).normal(size=(num_probes,) + in_shape)
    return make(basis, charges, probes)
