"""HDF5 run files (sde_bias.store, sde_bias.run): layout, attributes, xarray, round trip,
resume, online data, the theory hook."""

import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from sde_bias.run import run_scenario
from sde_bias.scenario import UserError, load_scenario, parse_yaml, scenario_from_dict, scenario_hash
from sde_bias.reader import load_run

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    sc = load_scenario(TINY)
    out = tmp_path_factory.mktemp("runs") / "tiny.h5"
    res = run_scenario(sc, out, quiet=True)
    return sc, res


def _records_equal(a, b):
    assert list(a["runners"]) == list(b["runners"])
    for g in a["runners"]:
        ra, rb = a["runners"][g], b["runners"][g]
        assert set(ra["records"]) == set(rb["records"])
        for k in ra["records"]:
            np.testing.assert_array_equal(ra["records"][k], rb["records"][k], err_msg=f"{g}/{k}")
        np.testing.assert_array_equal(ra["last_params"], rb["last_params"])
        np.testing.assert_array_equal(ra["diverged_at"], rb["diverged_at"])
        np.testing.assert_array_equal(ra["step"], rb["step"])


def test_root_attributes(tiny_run):
    sc, res = tiny_run
    assert res.path.exists() and not res.path.with_name(res.path.name + ".tmp").exists()
    with h5py.File(res.path) as f:
        a = f.attrs
        for key in [
            "schema_version", "sde_bias_version", "scenario_yaml", "scenario_hash", "created",
            "jax_version", "diffrax_version", "backend", "device", "precision", "seeds", "complete",
        ]:
            assert key in a, key
        assert a["scenario_hash"] == scenario_hash(sc)
        assert a["precision"] == "float64" and int(a["complete"]) == 1
        np.testing.assert_array_equal(a["seeds"], np.arange(4))
        assert json.loads(a["runners"]) == ["sgd", "gd"]
        assert "name: tiny" in a["scenario_yaml"]
        np.testing.assert_array_equal(f["data/train_y"][...], [1.0])


def test_groups_datasets_and_dimension_scales(tiny_run):
    sc, res = tiny_run
    with h5py.File(res.path) as f:
        for g in ("sgd", "gd"):
            grp = f[g]
            np.testing.assert_array_equal(grp["step"][...], [0, 10, 20, 30, 40])
            np.testing.assert_allclose(grp["time"][...], grp["step"][...] * 0.02)
            assert grp["loss"].shape == (4, 5)
            assert grp["params"].shape == (4, 5, 2)
            assert grp["invariants"].shape == (4, 5, 1)
            assert grp["balance.imbalance"].shape == (4, 5)
            np.testing.assert_array_equal(grp["diverged_at"][...], -1)
            assert int(grp.attrs["complete"]) == 1 and grp.attrs["status"] == "ok"
            for name, ds in grp.items():
                if not isinstance(ds, h5py.Dataset) or ds.is_scale:
                    continue
                for k, dim in enumerate(ds.dims):
                    assert len(dim) == 1, f"{g}/{name} axis {k} has no dimension scale"
                if "observable" in ds.attrs:
                    assert ds.chunks is not None and ds.compression == "gzip", name
                    assert [d[0].name.split("/")[-1] for d in ds.dims][:2] == ["seed", "time"]


def test_xarray_opens_every_group_with_named_dims(tiny_run):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    _, res = tiny_run
    for g in ("sgd", "gd"):
        with xr.open_dataset(res.path, group=g, engine="h5netcdf") as ds:
            assert ds["loss"].dims == ("seed", "time")
            assert ds["params"].dims == ("seed", "time", "param")
            assert ds["invariants"].dims == ("seed", "time", "invariant")
            assert ds["last_params"].dims == ("seed", "param")
            np.testing.assert_allclose(ds["time"].values, [0.0, 0.2, 0.4, 0.6, 0.8])
            assert float(ds["balance.imbalance"].isel(time=0).mean()) > 1.0
    with xr.open_dataset(res.path, engine="h5netcdf") as root:
        assert root.attrs["scenario_name"] == "tiny"


def test_same_initial_points_for_every_runner(tiny_run):
    _, res = tiny_run
    run = load_run(res.path)
    np.testing.assert_array_equal(
        run["runners"]["sgd"]["records"]["params"][:, 0], run["runners"]["gd"]["records"]["params"][:, 0]
    )


def test_round_trip_from_stored_yaml(tiny_run, tmp_path):
    sc, res = tiny_run
    with h5py.File(res.path) as f:
        text = f.attrs["scenario_yaml"]
    again = scenario_from_dict(parse_yaml(text), "stored")
    assert scenario_hash(again) == scenario_hash(sc)
    res2 = run_scenario(again, tmp_path / "again.h5", quiet=True)
    _records_equal(load_run(res.path), load_run(res2.path))


def test_interrupted_run_resumes_to_identical_numbers(tiny_run, tmp_path, monkeypatch):
    sc, res = tiny_run
    out = tmp_path / "cut.h5"
    from sde_bias import run as R

    calls = {"n": 0}
    real = R.Progress.update

    def stop_after_first_chunk(self, *a, **k):
        real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(R.Progress, "update", stop_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(sc, out, quiet=True)
    monkeypatch.setattr(R.Progress, "update", real)
    tmp = out.with_name(out.name + ".tmp")
    assert tmp.exists() and not out.exists()
    with h5py.File(tmp) as f:  # the interrupted file is readable: completed chunks only
        assert f["sgd/loss"].shape == (4, 3) and int(f["sgd"].attrs["records_done"]) == 3
        assert "gd" not in f
    resumed = run_scenario(sc, out, resume=True, quiet=True)
    assert resumed.resumed and not tmp.exists()
    _records_equal(load_run(res.path), load_run(out))
    # resuming a complete run does nothing; a different scenario is refused
    again = run_scenario(sc, out, resume=True, quiet=True)
    assert again.already_complete
    other = load_scenario(TINY, overrides=["training.lr=0.01"])
    with pytest.raises(UserError, match="different scenario"):
        run_scenario(other, out, resume=True, quiet=True)


def test_float32_scenario_stays_float32(tmp_path):
    sc = load_scenario(TINY, variant="quick", overrides=["precision=float32", "runners=[sgd]"])
    res = run_scenario(sc, tmp_path / "f32.h5", quiet=True)
    with h5py.File(res.path) as f:
        assert f["sgd/loss"].dtype == np.float32 and f["sgd/params"].dtype == np.float32
        assert f.attrs["precision"] == "float32"


def test_online_teacher_student_runs_with_per_seed_reference_data(tmp_path):
    raw = {
        "name": "online",
        "model": {"type": "hadamard", "dim": 3},
        "init": {"std": 0.3, "unbalance": {"log_scales": {"linspace": [-0.5, 0.5]}}},
        "data": {"type": "teacher_student", "teacher": {"std": 1.0}, "noise_std": 0.1, "n_test": 16},
        "loss": {"reduction": "mean"},
        "noise": {"scheme": "online", "batch_size": 4, "num_reference": 8},
        "training": {"lr": 0.01, "steps": 20, "record_every": 10},
        "seeds": {"count": 3},
        "runners": ["sgd", "euler_maruyama"],
        "record": ["loss", "test_loss", "balance"],
    }
    sc = scenario_from_dict(raw, "online.yaml")
    res = run_scenario(sc, tmp_path / "online.h5", quiet=True)
    run = load_run(res.path)
    for g in ("sgd", "sde/euler_maruyama"):
        r = run["runners"][g]["records"]
        assert r["balance/imbalance"].shape == (3, 3, 3)
        assert np.all(np.isfinite(r["test_loss"]))
    with h5py.File(res.path) as f:
        assert f["data/teacher_params"].shape == (6,)


def test_theory_hook_is_called(tmp_path, monkeypatch):
    seen = {}

    def theory_hook(scenario, setup, h5file):
        seen["args"] = (scenario.name, type(setup.problem).__name__, setup.theta0.shape)
        h5file.create_group("theory").attrs["note"] = "from the hook"

    mod = types.ModuleType("sde_bias.theory_run")
    mod.theory_hook = theory_hook
    monkeypatch.setitem(sys.modules, "sde_bias.theory_run", mod)
    sc = load_scenario(TINY, variant="quick", overrides=["runners=[gd]"])
    res = run_scenario(sc, tmp_path / "hook.h5", quiet=True)
    assert seen["args"] == ("tiny", "Problem", (4, 2))
    with h5py.File(res.path) as f:
        assert f["theory"].attrs["note"] == "from the hook"
