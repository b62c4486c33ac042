"""Designs from targets: a parameterization whose induced bias is a chosen regulariser
(docs/theory.md section 6.4).

Each function returns a :class:`Design`: the parameterization, its numbers (scales, synthesis,
initial scale), the penalty each mechanism minimises (in the parameterization's coordinates
``z``, with data ``X S``) next to the target, the predicted interpolators when labels are given, and
warnings where mechanisms disagree (:class:`DesignWarning`, also kept in ``Design.warnings``).

**Weighted l1 via a scaled Hadamard product** ``beta = S diag(lambda) (u * v)`` (``S`` a synthesis,
identity for plain weighted ``l1``), target ``sum_j w_j |(S^{-1} beta)_j|``, coordinates
``c = S^{-1} beta = lambda * z``. With ``a_j`` the second moments of the columns of ``X S``:

- label noise (section 6.2): ``R* = 2 sum_j a_j lambda_j |c_j|``, so ``lambda_j ~ w_j / a_j``;
- gradient flow from ``u_0 = alpha_j``, ``v_0 = 0`` (both signs reachable, section 6.1): the potential
  ``Phi_{A,B}`` with ``A = B = alpha_j^2 / 4`` behaves as ``log(2 / alpha_j^2) |z_j|``, i.e.
  ``log(2 / alpha_j^2) |c_j| / lambda_j``: ``lambda_j ~ 1 / w_j`` for one ``alpha``.

The two rules are opposite unless ``w_j ~ sqrt(a_j)``; ``mechanism="both"`` relies on both only
then, and otherwise follows the label-noise rule and warns. (Per-coordinate initial scales with
``log(2 / alpha_j^2) ~ w_j lambda_j`` would match gradient flow to leading order in ``log(1/alpha)``
only, and need scales far below floating-point range for weights that differ by a factor of a few:
not offered.) With ``depth > 2`` label noise selects
``sum D a_j lambda_j^{2/D} |c_j|^{2 - 2/D}`` (less sparse), while small-init gradient flow stays
``l1``-like: the design then relies on gradient flow only and says so.

**Group sparsity via a group Hadamard product** ``beta_g = lambda_g s_g v_g``: label noise gives
``2 sum_g lambda_g sqrt(tr C_g) |C_g^{1/2} beta_g|``; ``lambda_g = w_g / sqrt(tr C_g)`` matches the
weights, and the metric ``C_g^{1/2}`` is the Euclidean one only for whitened groups (warned). No
closed form of the gradient-flow bias is known here.

**Low rank via M = P Q** (observed entries ``Omega``): label noise gives
``(2 / |Omega|) |D_r^{1/2} M D_c^{1/2}|_*``, the plain nuclear norm when every row and every column is
observed equally often (warned otherwise). Small-initialisation gradient flow is conjectured to
approach minimum nuclear norm (Gunasekar et al. 2017) but does not always (Razin and Cohen 2020):
no prediction is made for it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ._convex import predicted_interpolator
from ._depth import WoodworthDepthPotential
from ._fibre_forms import (
    depth_fibre_penalty,
    factorization_fibre_penalty,
    feature_second_moments,
    group_fibre_penalty,
    observation_matrix,
)
from ._mirror import HyperbolicEntropy
from ._penalties import GroupNorm, WeightedL1, WeightedNuclear
from ._types import AbstractPenalty, Interpolator


class DesignWarning(UserWarning):
    """Mechanisms disagree, or a design matches its target only approximately."""


@dataclass(frozen=True)
class Design:
    """A designed parameterization and what each mechanism is predicted to select.

    ``penalties`` and ``predicted`` are keyed by ``"target"``, ``"label_noise"``, ``"gd"`` (where
    known); penalties act on ``z`` with data matrix ``X @ synthesis`` (``synthesis`` includes the
    scales), and ``predicted[k].beta = synthesis @ z``."""

    target: str
    parameterization: str
    mechanism: str
    relies_on: tuple[str, ...]
    scales: np.ndarray | None
    synthesis: np.ndarray | None
    init_scale: np.ndarray | None
    depth: int
    penalties: dict[str, AbstractPenalty]
    predicted: dict[str, Interpolator] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def distance(self, a: str, b: str) -> float:
        """``|beta_a - beta_b| / |beta_b|`` between two predicted interpolators."""
        x, y = self.predicted[a].beta, self.predicted[b].beta
        return float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y))


def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    warnings.warn(text, DesignWarning, stacklevel=3)


def _predict(penalties, X, y, synthesis):
    if y is None:
        return {}
    return {k: predicted_interpolator(p, X, y, synthesis) for k, p in penalties.items()}


def _compare(predicted, relies_on, messages, tol):
    if not predicted:
        return
    t = predicted["target"].beta
    for k in relies_on:
        d = float(jnp.linalg.norm(predicted[k].beta - t) / jnp.linalg.norm(t))
        if d > tol:
            _warn(messages, f"the {k} prediction is {d:.2g} (relative) from the target's interpolator")
    if "gd" in predicted and "label_noise" in predicted:
        d = float(jnp.linalg.norm(predicted["gd"].beta - predicted["label_noise"].beta) / jnp.linalg.norm(t))
        if d > tol:
            _warn(messages, f"gradient flow and label noise select interpolators {d:.2g} apart (relative)")


def design_weighted_l1(
    weights: ArrayLike,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    mechanism: str = "both",
    init_scale: float = 1e-3,
    depth: int = 2,
    synthesis: ArrayLike | None = None,
    tol: float = 1e-2,
) -> Design:
    """Scaled Hadamard ``beta = S diag(lambda) (u * v)`` for the target ``sum w_j |(S^{-1} beta)_j|``
    (module docstring). ``mechanism``: ``gd``, ``label_noise`` or ``both``; ``init_scale``: the
    largest ``alpha_j`` (``u_0 = alpha``, ``v_0 = 0``); ``tol``: relative distance above which a
    disagreement is warned (when ``y`` is given)."""
    if mechanism not in ("gd", "label_noise", "both"):
        raise ValueError(f"mechanism must be 'gd', 'label_noise' or 'both', got {mechanism!r}")
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    w = np.asarray(weights, float)
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    X = np.asarray(X, float)
    S = np.eye(X.shape[1]) if synthesis is None else np.asarray(synthesis, float)
    a = np.asarray(feature_second_moments(X @ S))
    msgs: list[str] = []
    notes: list[str] = []
    if mechanism == "gd":
        lam = 1.0 / w
    else:
        lam = w / a
    lam = lam / lam.max()
    alpha = np.full(w.shape, float(init_scale))
    if mechanism == "both" and np.ptp(w / np.sqrt(a)) > 1e-12 * np.max(w / np.sqrt(a)):
        _warn(msgs, "no scaling makes both mechanisms select this target (that needs w_j ~ sqrt(a_j)): lambda follows "
                    "the label-noise rule, and small-init gradient flow weights coordinate j by ~a_j / w_j instead")
    relies = {"gd": ("gd",), "label_noise": ("label_noise",), "both": ("gd", "label_noise")}[mechanism]
    if mechanism == "both" and msgs:
        relies = ("label_noise",)
    if depth > 2:
        if mechanism != "gd":
            _warn(msgs, f"depth {depth}: label noise selects sum D a_j lambda_j^(2/D) |c_j|^(2-2/D), not a weighted l1 "
                        "(less sparse as D grows); only small-init gradient flow stays l1-like")
        relies = ("gd",)
    elif mechanism == "gd" and np.ptp(w) > 0:
        _warn(msgs, "with lambda ~ 1/w, label noise weights coordinate j by a_j lambda_j ~ a_j / w_j: "
                    "the opposite of the target (scaling pulls the two mechanisms in opposite directions)")
    elif mechanism == "label_noise" and np.ptp(w / a) > 0:
        _warn(msgs, "with lambda ~ w/a, small-init gradient flow weights coordinate j by ~1/lambda_j ~ a_j / w_j: "
                    "the opposite of the target (scaling pulls the two mechanisms in opposite directions)")
    SL = S * lam[None, :]
    penalties: dict[str, AbstractPenalty] = {"target": WeightedL1(w * lam)}
    penalties["label_noise"] = depth_fibre_penalty(X @ SL, depth)
    if depth == 2:
        penalties["gd"] = HyperbolicEntropy(jnp.asarray(alpha**2 / 4), jnp.asarray(alpha**2 / 4))
    else:
        penalties["gd"] = WoodworthDepthPotential(alpha, depth)
        notes.append("depth > 2: the product is z = w_+^D - w_-^D from w_+ = w_- = alpha_j (Woodworth's Q^D)")
    predicted = _predict(penalties, X, y, SL)
    _compare(predicted, relies, msgs, tol)
    target = "weighted l1" if synthesis is None else "weighted l1 of S^-1 beta"
    return Design(target, "scaled_hadamard" if synthesis is None else "synthesis_hadamard", mechanism, relies,
                  lam, SL, alpha, depth, penalties, predicted, tuple(msgs), tuple(notes))


def design_transform_l1(synthesis: ArrayLike, X: ArrayLike, y: ArrayLike | None = None,
                        weights: ArrayLike | None = None, **kwargs) -> Design:
    """``beta = A diag(lambda) (u * v)`` for the target ``sum w_j |(A^{-1} beta)_j|`` (``A`` a
    synthesis: cumsum for total variation, a cosine or wavelet basis; ``w = 1`` by default)."""
    A = np.asarray(synthesis, float)
    w = np.ones(A.shape[1]) if weights is None else weights
    return design_weighted_l1(w, X, y, synthesis=A, **kwargs)


def design_group_sparsity(groups, X: ArrayLike, y: ArrayLike | None = None, weights: ArrayLike | None = None,
                          *, tol: float = 1e-2, whiteness_tol: float = 0.1) -> Design:
    """Group Hadamard ``beta_g = lambda_g s_g v_g`` for ``sum_g w_g |beta_g|_2`` under label noise
    (module docstring)."""
    X = np.asarray(X, float)
    groups = [list(g) for g in groups]
    w = np.ones(len(groups)) if weights is None else np.asarray(weights, float)
    msgs: list[str] = []
    traces = np.array([np.trace(X[:, g].T @ X[:, g]) / X.shape[0] for g in groups])
    lam = w / np.sqrt(traces)
    lam = lam / lam.max()
    for k, g in enumerate(groups):
        C = X[:, g].T @ X[:, g] / X.shape[0]
        ev = np.linalg.eigvalsh(C)
        if ev.max() / ev.min() - 1 > whiteness_tol:
            _warn(msgs, f"group {k}: its features are not whitened (eigenvalues of C_g span {ev.min():.3g}..{ev.max():.3g}); "
                        "label noise's group norm is |C_g^(1/2) beta_g|, not |beta_g|")
            break
    penalties: dict[str, AbstractPenalty] = {
        "target": GroupNorm(groups, w),
        "label_noise": group_fibre_penalty(X, groups, lam),
    }
    predicted = _predict(penalties, X, y, None)
    _compare(predicted, ("label_noise",), msgs, tol)
    notes = ("no closed form of the gradient-flow bias of a group Hadamard product is known to the package",)
    return Design("group sparsity", "group_hadamard", "label_noise", ("label_noise",), lam, None, None, 2,
                  penalties, predicted, tuple(msgs), notes)


def design_low_rank(shape: tuple[int, int], observed: ArrayLike | None = None, y: ArrayLike | None = None,
                    *, rank: int | None = None, tol: float = 1e-2) -> Design:
    """``M = P Q`` (inner dimension ``rank``, default ``min(shape)``) for minimum nuclear norm under
    label noise (module docstring); ``observed``: integer pairs ``[N, 2]`` (``None``: all entries)."""
    m, n = shape
    msgs: list[str] = []
    pen = factorization_fibre_penalty(shape, observed)
    if np.ptp(np.asarray(pen.row_weights)) > 0 or np.ptp(np.asarray(pen.col_weights)) > 0:
        _warn(msgs, "rows or columns are observed unequally often: label noise selects the weighted nuclear norm "
                    "|D_r^(1/2) M D_c^(1/2)|_*, not |M|_*")
    penalties: dict[str, AbstractPenalty] = {"target": WeightedNuclear(jnp.ones(m), jnp.ones(n)), "label_noise": pen}
    X = observation_matrix(shape, observed)
    predicted = _predict(penalties, X, y, None)
    _compare(predicted, ("label_noise",), msgs, tol)
    notes = ("small-init gradient flow: conjectured minimum nuclear norm (Gunasekar et al. 2017), not always "
             "(Razin and Cohen 2020); no prediction",)
    return Design("low rank", "factorization", "label_noise", ("label_noise",), None, None, None, 2,
                  penalties, predicted, tuple(msgs), notes)
