"""The schema of a scenario file: one pydantic block per key, and :class:`Scenario`.

Every block is a :class:`~sde_bias.config_base.ConfigBlock` (unknown keys rejected, values
not coerced, immutable); the keys are documented in ``docs/scenarios.md``. The model
blocks live in :mod:`sde_bias.model_registry`, a data file's in :mod:`sde_bias.datafile`,
the ``theory:`` and ``convergence:`` blocks in :mod:`sde_bias.theory_config` and
:mod:`sde_bias.convergence_config`. The schema checks each key on its own; checks across
keys (and against the model) are :mod:`sde_bias.scenario`'s. No JAX is imported here.

:func:`to_dict`, :func:`to_yaml` and :func:`scenario_hash` give the canonical form of a
validated scenario (what a run file stores).
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, PrivateAttr, field_serializer, field_validator

from .config_base import ConfigBlock
from .convergence_config import ConvergenceConfig
from .design_config import DesignConfig
from .datafile import FileData
from .model_registry import ModelConfig
from .report_config import ReportConfig
from .sweep_spec import SweepConfig
from .theory_config import TheoryConfig

SCHEMA_VERSION = 1

#: the names ``record:`` accepts (``sde_bias.observables.REGISTRY`` plus ``balance``; a test
#: keeps the two equal, so validation need not import the observables and JAX)
OBSERVABLE_NAMES = (
    "loss", "test_loss", "invariants", "distance_to_target", "singular_values", "total_variation",
    "params", "log_det_gram", "balance",
)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_nested_numbers(v, what: str):
    """A number or a (nested) list of numbers."""
    if _is_number(v):
        return v
    if isinstance(v, list) and v and all(_is_number(a) or isinstance(a, list) for a in v):
        for a in v:
            _check_nested_numbers(a, what)
        return v
    raise ValueError(f"{what} must be a number or a (nested) list of numbers")


# ---- models: sde_bias.model_registry (ModelConfig, MODEL_TYPES) --------------


# ---- initialisation -------------------------------------------------------


def _check_scalar_spec(v, what: str):
    """A number, ``{abs_normal: [a, b]}`` (a + b|z|, z ~ N(0, 1)) or
    ``{uniform: [lo, hi]}``."""
    if _is_number(v):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (kind, ab), = v.items()
        if kind in ("abs_normal", "uniform") and isinstance(ab, list) and len(ab) == 2 and all(
            _is_number(a) for a in ab
        ):
            if kind == "uniform" and not ab[0] <= ab[1]:
                raise ValueError(f"{what}: uniform: [lo, hi] needs lo <= hi")
            return v
    raise ValueError(
        f"{what} must be a number, {{abs_normal: [a, b]}} (a + b|z|, z ~ N(0,1)) "
        "or {uniform: [lo, hi]}"
    )


class UnbalanceConfig(ConfigBlock):
    """Move the initial point along its symmetry orbit: unit ``j`` rescaled by
    ``exp(log_scales[j])`` (the paper's unbalanced initialisations)."""

    log_scales: Any

    @field_validator("log_scales")
    @classmethod
    def _log_scales(cls, v):
        if _is_number(v):
            return v
        if isinstance(v, list) and v and all(_is_number(a) for a in v):
            return v
        if isinstance(v, dict) and set(v) == {"linspace"}:
            ab = v["linspace"]
            if isinstance(ab, list) and len(ab) == 2 and all(_is_number(a) for a in ab):
                return v
        raise ValueError(
            "log_scales must be a number, a list of numbers or {linspace: [start, stop]}"
        )


class InitConfig(ConfigBlock):
    """Initial parameters per seed: ``point + std * N(0, 1)`` per block, then
    ``unbalance``, then ``block_scale``."""

    std: Any = None
    point: dict[str, Any] | None = None
    unbalance: UnbalanceConfig | None = None
    block_scale: dict[str, Any] | None = None

    @field_validator("std")
    @classmethod
    def _std(cls, v):
        if v is None:
            return v
        if _is_number(v):
            if v < 0:
                raise ValueError("std must be >= 0")
            return v
        if isinstance(v, dict) and v and all(isinstance(k, str) and _is_number(s) for k, s in v.items()):
            bad = [k for k, s in v.items() if s < 0]
            if bad:
                raise ValueError(f"std of block {bad[0]!r} must be >= 0")
            return v
        raise ValueError("std must be a number >= 0 or a mapping {block: number}")

    @field_validator("point")
    @classmethod
    def _point(cls, v):
        if v is None:
            return v
        for k, a in v.items():
            _check_nested_numbers(a, f"point value of block {k!r}")
        return v

    @field_validator("block_scale")
    @classmethod
    def _block_scale(cls, v):
        if v is None:
            return v
        for k, a in v.items():
            _check_scalar_spec(a, f"block_scale of block {k!r}")
        return v


class TeacherConfig(InitConfig):
    """The teacher's parameters (same keys as ``init``), optionally of another model."""

    model: ModelConfig | None = None


# ---- data -----------------------------------------------------------------

DataSeed = Annotated[int, Field(ge=0)]


class FixedData(ConfigBlock):
    """An inline dataset: ``x`` (one entry per sample) and ``y``."""

    type: Literal["fixed"]
    x: list[Any] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    target: Any = None
    seed: DataSeed = 0

    @field_validator("x", "y")
    @classmethod
    def _xy(cls, v):
        for a in v:
            _check_nested_numbers(a, "every sample")
        return v

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        return v if v is None else _check_nested_numbers(v, "target")


class TeacherStudentData(ConfigBlock):
    """``x ~ N(0, I)``, ``y = teacher(x) + N(0, noise_std^2)``: fresh samples every step
    (``n_train`` unset, scheme ``online``) or a fixed training set of ``n_train``."""

    type: Literal["teacher_student"]
    teacher: TeacherConfig
    noise_std: NonNegativeFloat = 0.0
    n_train: PositiveInt | None = None
    n_test: PositiveInt | None = None
    seed: DataSeed = 0


class CompletionData(ConfigBlock):
    """Matrix completion: ``M* = U diag(singular_values) V^T``, entries observed with
    probability ``observe_prob``."""

    type: Literal["completion"]
    size: PositiveInt | None = None
    singular_values: list[PositiveFloat] = Field(min_length=1)
    observe_prob: Annotated[float, Field(gt=0, le=1)] = 0.2
    seed: DataSeed = 0


class SparseCosineData(ConfigBlock):
    """``y(t) = sum_k w_k cos(2 pi k t)`` with ``nnz`` nonzero ``w_k``."""

    type: Literal["sparse_cosine"]
    dim: PositiveInt | None = None
    nnz: PositiveInt = 3
    n_train: PositiveInt = 32
    n_test: PositiveInt = 10_000
    noise_std: NonNegativeFloat = 0.1
    seed: DataSeed = 0


PAPER_STEP_PIECES = [[1.0, 50], [-1.5, 70], [0.5, 40], [2.0, 40]]


class StepSignalData(ConfigBlock):
    """Piecewise-constant signal ``s*`` measured as ``y = A s* + noise``,
    ``A_ij ~ N(0, 1/num_measurements)``."""

    type: Literal["step_signal"]
    num_measurements: PositiveInt = 60
    noise_std: NonNegativeFloat = 0.1
    pieces: list[Any] = Field(default_factory=lambda: copy.deepcopy(PAPER_STEP_PIECES), min_length=1)
    seed: DataSeed = 0

    @field_validator("pieces")
    @classmethod
    def _pieces(cls, v):
        for p in v:
            if not (
                isinstance(p, list)
                and len(p) == 2
                and _is_number(p[0])
                and isinstance(p[1], int)
                and not isinstance(p[1], bool)
                and p[1] > 0
            ):
                raise ValueError("every piece must be [value, length] with an integer length > 0")
        return v


DataConfig = Annotated[
    Union[FixedData, TeacherStudentData, CompletionData, SparseCosineData, StepSignalData, FileData],
    Field(discriminator="type"),
]

DATA_TYPES = ["fixed", "teacher_student", "completion", "sparse_cosine", "step_signal", "file"]


# ---- loss, penalty, noise, training, seeds ----------------------------------


class LossConfig(ConfigBlock):
    """Squared loss per sample: ``scale * 1/2 |f - y|^2`` (half_sum) or
    ``scale * mean_k (f_k - y_k)^2`` (mean, PyTorch's MSELoss)."""

    reduction: Literal["half_sum", "mean"] = "half_sum"
    scale: PositiveFloat = 1.0


class PenaltyConfig(ConfigBlock):
    """Deterministic penalty on the invariants ``q = pi(theta)``."""

    l1: NonNegativeFloat = 0.0


SCHEMES = ["full_batch", "with_replacement", "without_replacement", "bernoulli", "online"]


class NoiseConfig(ConfigBlock):
    """The sampling scheme of SGD (and hence of the SDE)."""

    scheme: Literal["full_batch", "with_replacement", "without_replacement", "bernoulli", "online"] = (
        "full_batch"
    )
    batch_size: PositiveInt | None = None
    rho: float | None = None
    normalizer: PositiveFloat | None = None
    label_noise: NonNegativeFloat = 0.0
    num_reference: PositiveInt = 1024


class TrainingConfig(ConfigBlock):
    """Learning rate, length of the run and recording cadence."""

    lr: PositiveFloat
    steps: PositiveInt | None = None
    horizon: PositiveFloat | None = None
    record_every: PositiveInt
    chunk_records: PositiveInt | None = None
    divergence_threshold: PositiveFloat = 1e30


class SeedsConfig(ConfigBlock):
    """Seed ``i`` uses ``jax.random.PRNGKey(base + i)``, ``i = 0..count-1``."""

    base: Annotated[int, Field(ge=0)] = 0
    count: PositiveInt = 16


class Scenario(ConfigBlock):
    """A validated scenario (see ``docs/scenarios.md`` for every key)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str = ""
    precision: Literal["float32", "float64"] = "float32"
    model: ModelConfig
    init: InitConfig
    data: DataConfig
    loss: LossConfig = LossConfig()
    penalty: PenaltyConfig | None = None
    noise: NoiseConfig = NoiseConfig()
    training: TrainingConfig
    seeds: SeedsConfig = SeedsConfig()
    runners: list[str] = Field(min_length=1)
    runner_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    record: list[str] = Field(default_factory=lambda: ["loss"])
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    theory: TheoryConfig = Field(default_factory=TheoryConfig)
    convergence: ConvergenceConfig | None = None
    design: DesignConfig | None = None
    report: ReportConfig = ReportConfig()
    sweep: SweepConfig | None = None  # sde-bias sweep (sde_bias/sweep_spec.py); `run` ignores it

    _source: str = PrivateAttr(default="<scenario>")
    _variant: str | None = PrivateAttr(default=None)
    _overrides: tuple[str, ...] = PrivateAttr(default=())

    @field_serializer("theory", "convergence")
    def _as_written(self, block):
        """The ``theory:`` and ``convergence:`` blocks with only the keys the file sets, so
        the canonical form (and its hash) does not depend on those blocks' defaults."""
        return None if block is None else block.model_dump(mode="json", by_alias=True, exclude_unset=True)

    # ------------------------------------------------------------------ derived
    @property
    def source(self) -> str:
        return self._source

    @property
    def variant(self) -> str | None:
        return self._variant

    @property
    def overrides(self) -> tuple[str, ...]:
        return self._overrides

    @property
    def total_steps(self) -> int:
        t = self.training
        if t.steps is not None:
            return t.steps
        return int(round(t.horizon / t.lr))

    @property
    def num_records(self) -> int:
        """Number of records after the initial one."""
        return self.total_steps // self.training.record_every

    @property
    def chunk_records(self) -> int:
        """Records per compiled chunk: the scenario's ``chunk_records`` or about 20 equal
        chunks (the smallest divisor of the record count ``n`` from ``ceil(n / 20)``; if that
        is much larger, e.g. ``n`` prime, ``ceil(n / 20)`` with a shorter last chunk)."""
        total = self.num_records
        if self.training.chunk_records is not None:
            return min(self.training.chunk_records, total)
        target = math.ceil(total / 20)
        small = [k for k in range(1, math.isqrt(total) + 1) if total % k == 0]  # total may be ~2^31
        d = min(x for x in small + [total // k for k in small] if x >= target)
        return d if d <= 4 * target + 16 else target  # else the last chunk is shorter

    @property
    def seed_list(self) -> list[int]:
        return [self.seeds.base + i for i in range(self.seeds.count)]

    def run_label(self) -> str:
        """``name`` or ``name-variant``: the default output file stem."""
        return self.name if not self._variant else f"{self.name}-{self._variant}"


# ---------------------------------------------------------------------------
# Canonical YAML (what is stored in the HDF5 file) and its hash
# ---------------------------------------------------------------------------


def to_dict(sc: Scenario) -> dict:
    """The resolved scenario as a plain mapping (variants already applied, so dropped)."""
    return sc.model_dump(mode="python", exclude={"variants"}, exclude_none=True)


def to_yaml(sc: Scenario) -> str:
    """Canonical YAML of the resolved scenario: re-loading it gives the same run."""
    header = f"# sde_bias scenario (schema {SCHEMA_VERSION}), resolved from {sc.source}"
    if sc.variant:
        header += f", variant {sc.variant}"
    if sc.overrides:
        header += ", with " + " ".join(f"--set {o}" for o in sc.overrides)
    body = yaml.safe_dump(to_dict(sc), sort_keys=False, default_flow_style=None, width=100)
    return header + "\n" + body


def scenario_hash(sc: Scenario) -> str:
    """SHA-256 of the canonical mapping (independent of comments and key order)."""
    body = yaml.safe_dump(to_dict(sc), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


__all__ = [
    "Scenario", "InitConfig", "UnbalanceConfig", "TeacherConfig", "DataConfig", "FixedData", "TeacherStudentData",
    "CompletionData", "SparseCosineData", "StepSignalData", "LossConfig", "PenaltyConfig", "NoiseConfig",
    "TrainingConfig", "SeedsConfig", "DATA_TYPES", "SCHEMES", "OBSERVABLE_NAMES", "SCHEMA_VERSION",
    "to_dict", "to_yaml", "scenario_hash",
]
