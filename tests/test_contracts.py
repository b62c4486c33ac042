"""The engine's contracts (sde_bias.contracts, sde_bias.noise.AbstractScheme) and the
presets that build runners through them.

- the abstract classes declare abstract members only (the scheme also two final dense
  helpers), and every concrete stepper, runner and scheme of the package is final and
  complete;
- a preset of each kind builds its own runner, with the stepper and diffrax solver its
  fields say (the solver classes listed here by hand, not read from the table under test);
- the solver table agrees with the schema, and an unknown name is a one-line error naming
  the key.
"""

import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import diffrax
import pytest

import sde_bias
from sde_bias.contracts import AbstractRunner, AbstractStepper
from sde_bias.noise import SCHEME_FINAL_MEMBERS, AbstractScheme
from sde_bias.presets import (
    ADAPTIVE_SOLVERS,
    SOLVERS,
    AdaptivePreset,
    DiscretePreset,
    PresetError,
    SDEPreset,
    SolverName,
    load_presets,
    make_solver,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"

def _public_members(cls):
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def _is_abstract_member(member) -> bool:
    f = member.fget if isinstance(member, property) else member
    return getattr(f, "__isabstractmethod__", False)


@pytest.mark.parametrize(
    "cls,methods,variables,final",
    [
        (AbstractStepper, {"init", "draw", "step"}, {"substeps"}, ()),
        (AbstractRunner, {"init", "advance"}, {"preset"}, ()),
        (
            AbstractScheme,
            {"draw", "stochastic_gradient", "mean_gradient", "noise_dim", "diffusion_mv", "label_noise_weight"},
            set(),
            SCHEME_FINAL_MEMBERS,
        ),
    ],
)
def test_contracts_declare_abstract_members_only(cls, methods, variables, final):
    concrete = {name for name, m in _public_members(cls).items() if not _is_abstract_member(m)}
    assert concrete == set(final), concrete
    assert cls.__abstractmethods__ == methods
    assert cls.__abstractvars__ == variables
    with pytest.raises(TypeError):
        cls()


def _all_package_modules():
    """Every importable module of the package (its classes are what a subclass could be)."""
    out = []
    for info in pkgutil.walk_packages(sde_bias.__path__, "sde_bias."):
        try:
            out.append(importlib.import_module(info.name))
        except ImportError:  # an optional dependency (cvxpy for sde_bias.design)
            continue
    return out


@pytest.mark.parametrize("contract", [AbstractStepper, AbstractRunner, AbstractScheme])
def test_concrete_classes_are_final_and_complete(contract):
    _all_package_modules()  # every subclass defined in the package is registered
    expected = {
        AbstractStepper: {"DiscreteStepper", "SDEStepper", "RefinedStepper"},
        AbstractRunner: {"FixedStepRunner", "AdaptiveRunner"},
        AbstractScheme: {"FullBatch", "WithReplacement", "WithoutReplacement", "Bernoulli", "Online", "LabelNoise"},
    }[contract]

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    inside = {c for c in subclasses(contract) if c.__module__.startswith("sde_bias")}
    concrete = {c for c in inside if not inspect.isabstract(c) and not c.__abstractvars__}
    assert {c.__name__ for c in concrete} == expected
    final = SCHEME_FINAL_MEMBERS if contract is AbstractScheme else ()
    for cls in concrete:
        below = [s for s in cls.__subclasses__() if s.__module__.startswith("sde_bias")]
        assert below == [], f"{cls.__name__} is subclassed in the package: {below}"
        for name in final:
            assert name not in vars(cls), f"{cls.__name__} overrides the final member {name}"
    # abstract intermediates never override a concrete member of an ancestor
    for cls in inside:
        for base in cls.__mro__[1:]:
            if not (isinstance(base, type) and issubclass(base, contract)):
                continue
            for name, member in _public_members(base).items():
                if name in vars(cls) and not _is_abstract_member(member):
                    pytest.fail(f"{cls.__name__}.{name} overrides the concrete {base.__name__}.{name}")


# ------------------------------------------------------------------ presets build runners
EXPECTED_SOLVER = {
    "euler": diffrax.Euler,
    "ito_milstein": diffrax.ItoMilstein,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "euler_heun": diffrax.EulerHeun,
    "general_shark": diffrax.GeneralShARK,
    "spark": diffrax.SPaRK,
    "slow_rk": diffrax.SlowRK,
}


@pytest.fixture(scope="module")
def tiny_setup():
    from sde_bias.build import build_setup
    from sde_bias.scenario import load_scenario

    return build_setup(load_scenario(TINY))


def test_each_preset_kind_builds_its_runner(tiny_setup):
    from sde_bias.build import make_runner
    from sde_bias.runners import AdaptiveRunner, FixedStepRunner
    from sde_bias.sde import SDEStepper
    from sde_bias.sgd import DiscreteStepper

    presets = load_presets()
    kinds = {type(p) for p in presets.values()}
    assert kinds == {DiscretePreset, SDEPreset, AdaptivePreset}
    sc = tiny_setup.scenario
    lr = float(sc.training.lr)
    for name, p in presets.items():
        runner = p.make_runner(tiny_setup)
        assert isinstance(runner, AbstractRunner) and runner.preset is p, name
        assert type(make_runner(tiny_setup, p)) is type(runner), name
        if isinstance(p, DiscretePreset):
            st = runner.stepper
            assert isinstance(runner, FixedStepRunner) and isinstance(st, DiscreteStepper), name
            assert (st.svag_l, st.full_batch, st.lr, st.substeps) == (p.svag_l, p.full_batch, lr, p.svag_l), name
            assert p.group == name
        elif isinstance(p, SDEPreset):
            st = runner.stepper
            assert isinstance(runner, FixedStepRunner) and isinstance(st, SDEStepper), name
            assert type(st.solver) is EXPECTED_SOLVER[p.solver], name
            assert (st.substeps, st.dense_diffusion, st.sde.lr, st.sde.order2) == (p.substeps, p.dense_diffusion, lr, p.order2)
            assert st.ito_correction == p.ito_correction  # the tiny scenario has label noise: m > 0
            assert p.group == f"sde/{name}"
        else:
            assert isinstance(runner, AdaptiveRunner), name
            assert type(runner.solver) is EXPECTED_SOLVER[p.solver]
            assert runner.t_final == pytest.approx((sc.total_steps + 1) * lr, rel=1e-15)
            assert p.group == f"sde/{name}"


def test_runner_options_reach_the_stepper(tiny_setup):
    from sde_bias.presets import resolve_preset

    p = resolve_preset(load_presets()["heun"], {"substeps": 3, "solver": "midpoint"})
    st = p.make_stepper(tiny_setup)
    assert st.substeps == 3 and type(st.solver) is diffrax.Midpoint
    assert st.dt == pytest.approx(float(tiny_setup.scenario.training.lr) / 3, rel=1e-15)


def test_solver_table_matches_the_schema():
    assert set(typing.get_args(SolverName)) == set(SOLVERS) == set(EXPECTED_SOLVER)
    assert set(typing.get_args(AdaptivePreset.model_fields["solver"].annotation)) == set(ADAPTIVE_SOLVERS) <= set(SOLVERS)
    for name, cls in EXPECTED_SOLVER.items():
        assert type(make_solver(name)) is cls


def test_unknown_solver_is_a_one_line_error_naming_the_key():
    with pytest.raises(PresetError) as e:
        make_solver("rk4", "fast")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("fast: solver: ") and "(got 'rk4')" in msg and "heun" in msg
