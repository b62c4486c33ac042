"""Checks that a configuration can run, done before the first runner starts.

What ``sde-bias validate --deep`` accepts, ``sde-bias run`` must not refuse for a
configuration reason after computing. Two kinds of checks need more than the schema:

* :func:`theory_problems` (on every load; without the model, only the part that needs
  none): the ``theory:`` block against the model and the runners: ``invariants:
  singular_values`` needs a model with a matrix; checks on a grid of ``q`` (``section``
  points, ``stationary_check``, the ``section`` and ``noise_equilibrium`` fibers) need one
  invariant; the runners they read must be run and
  record what they read; the drift check's presets must be able to make one step; the
  chi-square test of ``stationary_check`` needs at least ``2 x 5`` seeds (two groups of
  five expected samples; Cochran's rule, as in :func:`sde_bias.stats.chi2_goodness_of_fit`).
* :func:`probe_runners` (needs the data and the initial points, so it builds them): the
  runners whose validity depends on the point (Ito Milstein needs commutative noise, probed
  at every seed's initial point, exactly as ``run`` does).

Checks that need the run's results (a stationary sample that lands in too few bins of the
grid, a runner whose seeds all diverged) cannot be done before; the theory stage reports
them as "insufficient data" in the comparison table instead.
"""

from __future__ import annotations

import math
from typing import Any

from ._numbers import MAX_ELEMENTS, SEED_MAX

#: the chi-square test merges bins until each expects 5 samples and needs 2 groups
MIN_STATIONARY_SEEDS = 10
#: the drift check's replicate key is PRNGKey(seeds.base + DRIFT_KEY_OFFSET)
DRIFT_KEY_OFFSET = 7919


def _model_facts(sc):
    """(has a matrix, number of invariants, number of parameters) of the scenario's model."""
    import jax
    import jax.numpy as jnp

    from .build import build_model

    model = build_model(sc.model)
    p = model.num_params
    q = jax.eval_shape(model.invariants, jax.ShapeDtypeStruct((p,), jnp.float32))
    return hasattr(model, "matrix"), int(math.prod(q.shape)), p


def _preset(name, presets):
    if presets is None:
        from .presets import load_presets

        presets = load_presets()
    return presets.get(name)


def theory_problems(sc, presets: dict | None = None, model: bool = True) -> list[tuple[str, str, Any]]:
    """Problems of a (schema-valid) ``theory:`` block for this scenario; see the module
    docstring. ``model=False``: only those that need no model (and no JAX): the runners and
    what they record, the presets' kinds, the seeds, the grids' lengths, array sizes at one
    parameter."""
    from .config_base import NO_VALUE as _NOVALUE  # noqa: N811
    from .theory_config import parse_theory

    cfg = parse_theory(sc.theory, sc.source)
    if not cfg.model_fields_set:  # an empty block asks for nothing
        return []
    out: list[tuple[str, str, Any]] = []
    add = out.append
    has_matrix, q_dim, p = _model_facts(sc) if model else (True, None, 1)
    kind = sc.model.type
    if cfg.invariants == "singular_values" and not has_matrix:
        add(("theory.invariants", f"singular_values needs a model with a matrix (matrix_factorization), not {kind}", cfg.invariants))

    def one_invariant(path: str, what: str):
        if cfg.invariants != "default":
            add((path, f"{what} uses the balanced section of q = the model's invariants: needs invariants: default", _NOVALUE))
        elif q_dim is not None and q_dim != 1:
            add((path, f"{what} takes a grid of one invariant; model {kind} has {q_dim}", _NOVALUE))

    def grid_ok(path: str, grid, least: int):
        if grid is None:
            return
        a, b, n = grid.linspace
        if n < least or (least > 1 and not a < b):
            add((path, f"linspace [a, b, n] needs n >= {least}" + (" and a < b" if least > 1 else ""), list(grid.linspace)))
        elif n * p > MAX_ELEMENTS:
            add((path, f"n x parameters is more than 2^31 - 1 elements", list(grid.linspace)))

    def runner_records(path: str, name: str, observable: str, what: str):
        if name not in sc.runners:
            add((path, f"{what} reads runner {name!r}, which is not one of the runners {sc.runners}", name))
        elif observable not in sc.record:
            add(("record", f"{what} needs {observable!r} recorded (theory reads runner {name!r}'s {observable})", sc.record))

    def kind_of(path: str, name: str, kinds: tuple[str, ...], what: str):
        pr = _preset(name, presets)
        if pr is None:
            add((path, f"no solver preset named {name!r}", name))
        elif pr.kind not in kinds:
            add((path, f"{what} needs a preset of kind {' or '.join(kinds)}; {name!r} is {pr.kind}", name))

    dc = cfg.drift_check
    if dc is not None:
        if dc.points == "section":
            if dc.grid is None:
                add(("theory.drift_check.grid", "points: section needs a grid of q values, {linspace: [a, b, K]}", _NOVALUE))
            one_invariant("theory.drift_check.points", "points: section")
            grid_ok("theory.drift_check.grid", dc.grid, 1)
        elif dc.points == "final" and dc.from_ not in sc.runners:
            add(("theory.drift_check.from", f"points: final reads runner {dc.from_!r}, which is not one of the runners {sc.runners}", dc.from_))
        kind_of("theory.drift_check.sgd", dc.sgd, ("discrete", "sde"), "the discrete estimate")
        kind_of("theory.drift_check.sde", dc.sde, ("sde",), "the SDE estimate (and the Ito projection)")
        k = dc.grid.linspace[2] if dc.points == "section" and dc.grid is not None else dc.num_points
        if k * dc.replicates * p > MAX_ELEMENTS:
            add(("theory.drift_check.replicates", f"points x replicates x parameters = {k * dc.replicates * p:.3g} elements, more than 2^31 - 1", dc.replicates))
        if sc.seeds.base + DRIFT_KEY_OFFSET > SEED_MAX:
            add(("seeds.base", f"the drift check draws from PRNGKey(seeds.base + {DRIFT_KEY_OFFSET}): base must be at most {SEED_MAX - DRIFT_KEY_OFFSET}", sc.seeds.base))
    st = cfg.stationary_check
    if st is not None:
        one_invariant("theory.stationary_check", "stationary_check")
        grid_ok("theory.stationary_check.grid", st.grid, 2)
        runner_records("theory.stationary_check.runner", st.runner, "invariants", "stationary_check")
        kind_of("theory.stationary_check.runner", st.runner, ("sde",), "stationary_check (its SDE gives a(q), D(q))")
        if q_dim is not None and st.component >= q_dim:
            add(("theory.stationary_check.component", f"model {kind} has {q_dim} invariant(s)", st.component))
        if sc.seeds.count < MIN_STATIONARY_SEEDS:
            add(("seeds.count", f"stationary_check's chi-square test needs at least {MIN_STATIONARY_SEEDS} seeds "
                 "(its samples are the seeds' final states; two groups of 5 expected samples)", sc.seeds.count))
    ed = cfg.effective_drift
    if ed is not None:
        for fiber in ed.fibers:
            if fiber in ("section", "noise_equilibrium"):
                if ed.grid is None:
                    add(("theory.effective_drift.grid", f"fiber {fiber} needs a grid of q values", _NOVALUE))
                one_invariant("theory.effective_drift.fibers", f"fiber {fiber}")
            else:
                runner_records("theory.effective_drift.runner", ed.runner, "params", "fiber empirical")
        grid_ok("theory.effective_drift.grid", ed.grid, 2)
        if q_dim is not None and ed.component >= q_dim:
            add(("theory.effective_drift.component", f"model {kind} has {q_dim} invariant(s)", ed.component))
    if cfg.balance_check and "params" not in sc.record:
        add(("theory.balance_check", "needs `params` in record (the law is integrated along the recorded states)", True))
    # one message per key path
    seen, uniq = set(), []
    for prob in out:
        if prob[0] not in seen:
            seen.add(prob[0])
            uniq.append(prob)
    return uniq


def probe_runners(sc, presets: dict | None = None):
    """Build the scenario's problem and, for runners that must be probed at the initial
    points (Ito Milstein's commutative noise), its run setup and those runners: the checks
    ``run`` makes before its first runner. Returns the built problem."""
    from .build import build_problem, build_setup, make_runner
    from .presets import load_presets, resolve_preset

    presets = load_presets() if presets is None else presets
    built = build_problem(sc)
    resolved = [resolve_preset(presets[r], sc.runner_options.get(r)) for r in sc.runners if r in presets]
    probe = [p for p in resolved if getattr(p, "solver", None) == "ito_milstein"]
    if probe:
        setup = build_setup(sc, built)
        for p in probe:
            make_runner(setup, p)
    return built
