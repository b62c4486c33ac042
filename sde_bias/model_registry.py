"""The model registry: a scenario's ``model:`` block, its config class, and the model it builds.

A catalogue model is registered once, with the pydantic block that validates its keys and
the model it builds, named ``"module:Class"`` and imported on first use (loading a
scenario does not import JAX)::

    register_model("hadamard", HadamardConfig, "sde_bias.models:Hadamard")

``model: {type: hadamard, dim: 4}`` then builds ``Hadamard(dim=4, features="identity")``:
the block's keys other than ``type`` are the keyword arguments. Everything else about the
model (blocks, shapes, accepted data, symmetry, unbalancing) is asked of the built model
(:class:`sde_bias.models.AbstractModel`); nothing switches on the type name.

Two more types, documented in docs/models.md ("Bring your own model"):

- ``type: "my_pkg.my_module:MyModel"`` builds a class of one's own (a subclass of
  ``AbstractModel``) with the other keys as keyword arguments;
- ``type: predictor`` wraps a bare predictor function ``f(params, x)``; its symmetry is
  discovered (:func:`sde_bias.user_models.load_predictor`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .config_base import ConfigBlock, PositiveInt

FeatureKind = Literal["identity", "cosine"]
USER_TAG = "module:Class"
"""The tag under which ``type: "module:Class"`` appears in error messages."""
_OBJECT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"

_REGISTRY: dict[str, tuple[type[BaseModel], str]] = {}


def register_model(tag: str, config: type[BaseModel], target: str) -> None:
    """Register a model type: ``model: {type: tag, ...}`` is validated by ``config`` (a
    :class:`~sde_bias.config_base.ConfigBlock` with ``type: Literal[tag]``) and builds
    ``target(**keys)``, ``target`` given as ``"module:name"`` (a model class or a function
    returning a model)."""
    if ":" in tag or tag in _REGISTRY:
        raise ValueError(f"model type {tag!r} is already registered or contains ':'")
    _REGISTRY[tag] = (config, target)


# ---------------------------------------------------------------------------
# The catalogue's blocks
# ---------------------------------------------------------------------------


class ScalarProductConfig(ConfigBlock):
    """``f = u v x``: the hyperbola toy (blocks ``u``, ``v``; input a scalar)."""

    type: Literal["scalar_product"]


class LinearConfig(ConfigBlock):
    """``f = phi(x) . w`` (block ``w``): the vanilla baseline without symmetry."""

    type: Literal["linear"]
    dim: PositiveInt
    features: FeatureKind = "identity"


class HadamardConfig(ConfigBlock):
    """``f = phi(x) . (p * q)`` (blocks ``p``, ``q``)."""

    type: Literal["hadamard"]
    dim: PositiveInt
    features: FeatureKind = "identity"


class DeepHadamardConfig(ConfigBlock):
    """``f = phi(x) . (u1 * ... * uD)`` (blocks ``u1``..``uD``)."""

    type: Literal["deep_hadamard"]
    dim: PositiveInt
    depth: Annotated[int, Field(ge=2)]
    features: FeatureKind = "identity"


class GroupHadamardConfig(ConfigBlock):
    """``beta_g = s_g v_g`` over groups of ``group_size`` coordinates, ``f = phi(x) . beta``
    (blocks ``s``, ``v``)."""

    type: Literal["group_hadamard"]
    dim: PositiveInt
    group_size: PositiveInt
    features: FeatureKind = "identity"


class MatrixFactorizationConfig(ConfigBlock):
    """``M = P Q`` (blocks ``P`` rows x rank, ``Q`` rank x cols); input an index pair."""

    type: Literal["matrix_factorization"]
    rows: PositiveInt
    rank: PositiveInt
    cols: PositiveInt


class DeepLinearConfig(ConfigBlock):
    """``f = W_L ... W_1 x`` with ``widths = [h_0, ..., h_L]`` (blocks ``W1``..``WL``)."""

    type: Literal["deep_linear"]
    widths: list[PositiveInt] = Field(min_length=2)


class ReluConfig(ConfigBlock):
    """``f = V relu(W x)`` (blocks ``W`` hidden x in_dim, ``V`` out_dim x hidden)."""

    type: Literal["relu"]
    in_dim: PositiveInt
    hidden: PositiveInt
    out_dim: PositiveInt = 1


class AttentionConfig(ConfigBlock):
    """Single-head softmax attention (blocks ``WQ``, ``WK``, optional ``WV``, ``WO``)."""

    type: Literal["attention"]
    seq_len: PositiveInt
    embed_dim: PositiveInt
    head_dim: PositiveInt
    value_dim: PositiveInt | None = None
    output_dim: PositiveInt | None = None


class CumsumHadamardConfig(ConfigBlock):
    """``s = cumsum(w1 * w2)``, ``f = x . s`` (blocks ``w1``, ``w2``)."""

    type: Literal["cumsum_hadamard"]
    length: PositiveInt


class PredictorConfig(ConfigBlock):
    """A bare predictor ``function(params, x)`` (``"module:name"``) with parameter blocks
    ``params: {name: shape}`` and inputs of ``input_shape``; its symmetry is discovered.
    Optional ``invariants`` (``params -> q``) and ``section`` (``q -> params``) functions."""

    type: Literal["predictor"]
    function: Annotated[str, Field(pattern=_OBJECT_PATH)]
    params: dict[str, list[PositiveInt]] = Field(min_length=1)
    input_shape: list[PositiveInt]
    invariants: Annotated[str, Field(pattern=_OBJECT_PATH)] | None = None
    section: Annotated[str, Field(pattern=_OBJECT_PATH)] | None = None


class UserModelConfig(BaseModel):
    """``type: "module:Class"``: a model class of one's own; the other keys are its keyword
    arguments (any YAML values)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    tag: ClassVar[str] = USER_TAG

    type: Annotated[str, Field(pattern=_OBJECT_PATH)]


register_model("scalar_product", ScalarProductConfig, "sde_bias.models:ScalarProduct")
register_model("linear", LinearConfig, "sde_bias.models:Linear")
register_model("hadamard", HadamardConfig, "sde_bias.models:Hadamard")
register_model("deep_hadamard", DeepHadamardConfig, "sde_bias.models:DeepHadamard")
register_model("group_hadamard", GroupHadamardConfig, "sde_bias.models:GroupHadamard")
register_model("matrix_factorization", MatrixFactorizationConfig, "sde_bias.models:MatrixFactorization")
register_model("deep_linear", DeepLinearConfig, "sde_bias.models:DeepLinear")
register_model("relu", ReluConfig, "sde_bias.models:TwoLayerReLU")
register_model("attention", AttentionConfig, "sde_bias.models:Attention")
register_model("cumsum_hadamard", CumsumHadamardConfig, "sde_bias.models:CumsumHadamard")
register_model("predictor", PredictorConfig, "sde_bias.user_models:load_predictor")


# ---------------------------------------------------------------------------
# The schema type of `model:`
# ---------------------------------------------------------------------------


def _tag_of(value: Any) -> str | None:
    """Which block validates a ``model:`` mapping: its ``type``, or :data:`USER_TAG` for
    ``"module:Class"``."""
    t = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if t is None:
        return None
    if isinstance(t, str) and ":" in t:
        return USER_TAG
    return str(t)


def _model_config_type():
    members = [Annotated[cfg, Tag(tag)] for tag, (cfg, _) in _REGISTRY.items()]
    members.append(Annotated[UserModelConfig, Tag(USER_TAG)])
    return Annotated[Union[tuple(members)], Discriminator(_tag_of)]


ModelConfig = _model_config_type()
"""The schema type of a scenario's ``model:`` block (and of ``data.teacher.model``)."""

MODEL_TYPES = list(_REGISTRY)
"""Registered model types (besides ``"module:Class"``)."""


def config_classes() -> dict[str, type[BaseModel]]:
    """``{tag: config block}`` of every model type, ``USER_TAG`` included."""
    return {**{tag: cfg for tag, (cfg, _) in _REGISTRY.items()}, USER_TAG: UserModelConfig}


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


class ModelLoadError(ValueError):
    """A model block that does not build. ``key`` is the offending key inside the block
    (``"type"``, ``"function"``, ...; ``""`` for the block as a whole)."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(message)


def import_object(path: str, key: str = "type") -> Any:
    """The object named ``"module:name"`` (``name`` may be dotted). The current directory
    is on the import path (as with ``python -m``); failures raise :class:`ModelLoadError`
    naming ``key``."""
    module_name, _, attr = path.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported in one line
        raise ModelLoadError(key, f"cannot import module {module_name!r} of {path!r}: {type(e).__name__}: {_first_line(e)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(key, f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


_BUILT: dict[tuple[str, str], Any] = {}


def build_model(cfg):
    """The model of a ``model:`` block (cached per configuration: models are immutable).
    Raises :class:`ModelLoadError` when it cannot be built."""
    key = (type(cfg).__name__, cfg.model_dump_json())
    if key in _BUILT:
        return _BUILT[key]
    kwargs = cfg.model_dump(exclude={"type"})
    if cfg.type in _REGISTRY:
        target_path, bad_key = _REGISTRY[cfg.type][1], ""
    else:
        target_path, bad_key = cfg.type, "type"
    target = import_object(target_path, bad_key or "type")
    if bad_key and not (isinstance(target, type) and _is_model_class(target)):
        raise ModelLoadError("type", f"{cfg.type!r} is not a model class: it must subclass sde_bias.models.AbstractModel")
    missing = sorted(getattr(target, "__abstractmethods__", ()))
    if bad_key and missing:
        raise ModelLoadError("type", f"{cfg.type} does not implement the model interface: missing {', '.join(missing)}")
    name = getattr(target, "__name__", target_path)
    try:
        model = target(**kwargs)
    except ModelLoadError:
        raise
    except ValueError as e:
        if not bad_key:  # the catalogue's constructors say what is wrong
            raise ModelLoadError("", _first_line(e)) from None
        raise ModelLoadError("", f"{name}({_kwargs_text(kwargs)}) failed: ValueError: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - constructor errors of a user's model become one line
        raise ModelLoadError("", f"{name}({_kwargs_text(kwargs)}) failed: {type(e).__name__}: {_first_line(e)}") from None
    if not _is_model_class(type(model)):
        raise ModelLoadError("type", f"{target_path} returned {type(model).__name__}, not an sde_bias.models.AbstractModel")
    _BUILT[key] = model
    return model


def _is_model_class(cls) -> bool:
    from .models import AbstractModel

    return isinstance(cls, type) and issubclass(cls, AbstractModel)


def _kwargs_text(kwargs: dict) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) <= 80 else text[:77] + "..."
