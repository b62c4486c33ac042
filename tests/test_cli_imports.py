"""`sde-bias --help`, `--version`, `list` and `validate` start without JAX (or scipy,
matplotlib, h5py): the package init loads its API lazily and the CLI imports heavy modules
inside commands; `validate --deep` builds the models and so imports JAX."""

import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT

HEAVY = ("jax", "jaxlib", "diffrax", "equinox", "scipy", "matplotlib", "h5py")

_CHILD = """
import sys
from sde_bias.cli import main
try:
    rc = main({argv!r})
except SystemExit as e:
    rc = e.code
heavy = [m for m in {heavy!r} if m in sys.modules]
assert rc == 0, rc
assert not heavy, heavy
print("LIGHT")
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["list"], ["run", "--help"],
    ["validate", "scenarios/theory_hyperbola.yaml", "scenarios/matrix_completion.yaml", "examples/gated_linear.yaml"],
    ["validate", "scenarios/hyperbola.yaml", "--variant", "quick", "--set", "training.lr=0.01"],
], ids=" ".join)
def test_light_commands_do_not_import_jax(argv):
    res = _python(_CHILD.format(argv=argv, heavy=HEAVY))
    assert res.returncode == 0 and "LIGHT" in res.stdout, res.stderr[-2000:]


_REFUSED = """
import sys
from sde_bias.cli import main
rc = main({argv!r})
assert rc == 2, rc
print("JAX" if "jax" in sys.modules else "LIGHT")
"""


@pytest.mark.parametrize("deep", [False, True], ids=["static", "deep"])
def test_validate_refuses_static_problems_without_jax_and_model_problems_with_deep(tmp_path, deep):
    """A problem between keys (a batch size with full-batch noise) is refused without JAX;
    one that only the model can tell (an init block the model does not have) only with
    --deep, which imports JAX."""
    text = (ROOT / "scenarios" / "hyperbola.yaml").read_text()
    static = tmp_path / "static.yaml"
    static.write_text(text.replace("  scheme: full_batch", "  batch_size: 2\n  scheme: full_batch", 1))
    res = _python(_REFUSED.format(argv=["validate", *(["--deep"] if deep else []), str(static)]))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == ("JAX" if deep else "LIGHT")
    assert f"{static}: noise.batch_size: only used by schemes" in res.stderr
    model = tmp_path / "model.yaml"
    model.write_text(text.replace("init:", "init:\n  block_scale: {nope: 2.0}", 1))
    argv = ["validate", *(["--deep"] if deep else []), str(model)]
    if deep:
        res = _python(_REFUSED.format(argv=argv))
        assert res.returncode == 0 and res.stdout.split()[-1] == "JAX", res.stderr[-2000:]
        assert f"{model}: init.block_scale.nope: unknown block of model" in res.stderr
    else:
        res = _python(_CHILD.format(argv=argv, heavy=HEAVY))
        assert res.returncode == 0 and "LIGHT" in res.stdout, res.stderr[-2000:]
        assert "add --deep" in res.stdout


def test_public_api_still_loads_on_first_use():
    """Attribute access, `from sde_bias import X` and `import *` give the same objects."""
    res = _python(
        "import sys, sde_bias\n"
        "assert 'jax' not in sys.modules\n"
        "from sde_bias import Hadamard, run_scenario\n"
        "from sde_bias.models import Hadamard as H2\n"
        "assert Hadamard is H2 and 'jax' in sys.modules\n"
        "ns = {}\n"
        "exec('from sde_bias import *', ns)\n"
        "assert ns['discover_symmetries'] is sde_bias.discovery.discover_symmetries\n"
        "assert {'Problem', 'SGDSDE', 'load_scenario', 'models'} <= set(ns) <= set(dir(sde_bias))\n"
        "try:\n"
        "    sde_bias.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print('OK')\n"
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]


def _best_of(code: str, n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        assert _python(code).returncode == 0
        best = min(best, time.perf_counter() - t)
    return best


def test_help_costs_less_than_half_an_import_of_jax():
    """Timed relative to the same machine: the start-up cost of `--help` over a bare
    interpreter (`python -c pass`) is under half the cost of `import jax` alone (best of 3
    runs each, so the ratio is not at the mercy of one slow start)."""
    bare = _best_of("pass")
    help_ = _best_of("from sde_bias.cli import main; main(['--help'])")
    jax_ = _best_of("import jax")
    assert help_ - bare < 0.5 * (jax_ - bare), (bare, help_, jax_)


def test_no_public_name_shadows_a_submodule():
    """The API loads lazily: a public name equal to a submodule's name (``sde_bias.verdict``)
    would be the function or the module depending on what was imported first."""
    import pkgutil

    import sde_bias
    import sde_bias._api as api

    submodules = {m.name for m in pkgutil.iter_modules(sde_bias.__path__)}
    shadowing = [k for k in vars(api) if not k.startswith("_") and k in submodules]
    assert not shadowing, shadowing
