"""sde_bias.reader reads back what sde_bias.store writes: every runner group, record, attribute,
the generated data and the theory / comparisons groups, checked against h5py directly. Fast:
the files are written with the store API (no integration)."""

import json

import h5py
import numpy as np
import pytest
import yaml

from sde_bias.reader import RunData, RunnerRecords, load_run, read_h5, read_run
from sde_bias.scenario import UserError
from sde_bias.store import GroupData, RunFile, finalize, tmp_path_for

S, P = 5, 3


def _write(path, complete=True, chunks=2):
    """A run file with two runners (``sgd``, ``sde/euler_maruyama``), data and a theory group."""
    rng = np.random.default_rng(1)
    scenario = {"name": "toy", "report": {"section": "relu"}, "model": {"type": "linear", "dim": 3},
                "data": {"type": "fixed", "x": [[1.0, 0.0, 0.0]], "y": [1.0]}}
    attrs = {"scenario_name": "toy", "scenario_yaml": yaml.safe_dump(scenario), "variant": "quick",
             "overrides": json.dumps(["training.lr=0.1"]), "num_seeds": S, "lr": 0.1, "total_steps": 20,
             "record_every": 10, "runner_groups": json.dumps(["sgd", "sde/euler_maruyama"]), "source": "toy.yaml"}
    tmp = tmp_path_for(path)
    f = RunFile.create(tmp, attrs)
    f.write_data({"target": rng.standard_normal(4).astype(np.float32), "train_x": rng.standard_normal((2, 3))})
    written = {}
    for gname in ("sgd", "sde/euler_maruyama"):
        shapes = {"loss": ((), np.float64), "params": ((P,), np.float32), "balance/imbalance": ((), np.float64)}
        g = f.create_runner(gname, {"preset": gname.split("/")[-1], "kind": "discrete"}, np.arange(S) + 7, P,
                            shapes, 4, np.float32)
        recs = {"loss": rng.standard_normal((S, 1)), "params": rng.standard_normal((S, 1, P)).astype(np.float32),
                "balance/imbalance": rng.standard_normal((S, 1))}
        f.append(g, np.array([0]), np.array([0.0]), recs)
        for c in range(1, chunks + 1):
            more = {"loss": rng.standard_normal((S, 1)), "params": rng.standard_normal((S, 1, P)).astype(np.float32),
                    "balance/imbalance": rng.standard_normal((S, 1))}
            f.append(g, np.array([10 * c]), np.array([c * 1.0]), more)
            recs = {k: np.concatenate([recs[k], more[k]], axis=1) for k in recs}
        div = np.array([-1, 10, -1, -1, 20])
        theta = rng.standard_normal((S, P)).astype(np.float32)
        f.save_state(g, theta, div, 10 * chunks, np.zeros((S, 2), np.uint32), [], chunks + 1)
        g.attrs["wall_time_s"] = 1.5
        g.attrs["complete"] = np.int8(1 if complete else 0)
        written[gname] = (recs, div, theta)
    theory = GroupData({"q": np.linspace(0, 1, 4)}, {"runner": "sgd", "num": 3},
                       {"sub": GroupData({"a": np.arange(3)}, {"note": "x"})})
    f.write_group("theory/check", theory)
    f.write_group("comparisons", GroupData({"runner": np.array([b"sgd", b"sde"], dtype=object)}, {"table": "T"}))
    if complete:
        f.h5.attrs["complete"] = np.int8(1)
        f.close()
        finalize(tmp, path)
        return path, written
    f.close()
    return tmp, written


def test_read_run_matches_h5py(tmp_path):
    path, written = _write(tmp_path / "toy.h5")
    run = read_run(path)
    assert isinstance(run, RunData) and list(run.runners) == ["sgd", "sde/euler_maruyama"]
    with h5py.File(path, "r") as h5:
        assert run.attrs["lr"] == h5.attrs["lr"] and run.attrs["scenario_name"] == "toy"
        for gname, g in run.runners.items():
            assert isinstance(g, RunnerRecords)
            hg = h5[gname]
            for k in ("seed", "time", "step", "diverged_at", "last_params"):
                np.testing.assert_array_equal(getattr(g, k), hg[k][...])
            assert set(g.records) == {"loss", "params", "balance/imbalance"}
            for name, arr in g.records.items():
                ds = hg[name.replace("/", ".")]
                assert arr.dtype == ds.dtype and g.shapes[name] == ds.shape
                np.testing.assert_array_equal(arr, ds[...])
                np.testing.assert_array_equal(arr, written[gname][0][name])  # what was appended
            np.testing.assert_array_equal(g.diverged_at, written[gname][1])
            np.testing.assert_array_equal(g.last_params, written[gname][2])
            assert g.num_diverged == 2 and g.num_seeds == S and g.preset == gname.split("/")[-1]
            assert g.complete and g.wall_time_s == 1.5
        np.testing.assert_array_equal(run.data["target"], h5["data/target"][...])
        assert run.data["target"].dtype == np.float32 and set(run.data) == {"target", "train_x"}
    assert run.theory["check"].attrs == {"runner": "sgd", "num": 3}
    np.testing.assert_array_equal(run.theory["check/q"], np.linspace(0, 1, 4))
    np.testing.assert_array_equal(run.theory["check/sub/a"], np.arange(3))
    assert run.theory["check/sub"].attrs["note"] == "x"
    assert run.comparisons_table == "T" and list(run.comparisons["runner"]) == [b"sgd", b"sde"]
    # scenario facts and roles
    assert run.report_section == "relu" and run.sc("model", "dim") == 3 and run.sc("nope", default=4) == 4
    assert run.variant == "quick" and run.label == "toy [quick]" and run.overrides == ["training.lr=0.1"]
    assert run.command() == "sde-bias run toy.yaml --variant quick --set training.lr=0.1"
    assert run.sgd() is run.runners["sgd"] and run.sde() is run.runners["sde/euler_maruyama"] and run.gd() is None
    assert run.runner_named("euler_maruyama") is run.sde()
    with pytest.raises(KeyError, match="no runner group 'heun'"):
        run.runner_named("heun")
    assert run.sgd().index_at(10) == 1 and run.sgd().index_at(15) == 1 and run.sgd().index_at(None) == 2
    assert set(run.other_groups) == {"data", "theory", "comparisons"}


def test_partial_reads_and_the_dict_view(tmp_path):
    path, written = _write(tmp_path / "toy.h5")
    last = read_run(path, last_only=True)
    full = read_run(path)
    for gname in full.runners:
        for name, arr in full.runners[gname].records.items():
            np.testing.assert_array_equal(last.runners[gname].records[name], arr[:, -1:])
            assert last.runners[gname].shapes[name] == arr.shape
    some = read_run(path, records=["loss"])
    assert set(some.sgd().records) == {"loss"} and set(some.sgd().shapes) == {"loss", "params", "balance/imbalance"}
    assert read_run(path, records=False).sgd().records == {}
    d = load_run(path)
    np.testing.assert_array_equal(d["runners"]["sgd"]["records"]["params"], written["sgd"][0]["params"])
    assert d["attrs"]["scenario_name"] == "toy"
    with h5py.File(path, "r") as h5:  # the theory stage's view of an open file
        np.testing.assert_array_equal(read_h5(h5).sgd().records["loss"], written["sgd"][0]["loss"])


def test_interrupted_file_and_errors(tmp_path):
    tmp, written = _write(tmp_path / "toy.h5", complete=False)
    run = read_run(tmp)
    assert not run.complete and not run.sgd().complete and run.sgd().records["loss"].shape == (S, 3)
    with pytest.raises(UserError, match="no such file"):
        read_run(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        read_run(tmp_path / "junk.h5")


def test_old_file_without_a_report_block_is_generic(tmp_path):
    path, _ = _write(tmp_path / "toy.h5")
    with h5py.File(path, "r+") as h5:
        sc = yaml.safe_load(h5.attrs["scenario_yaml"])
        del sc["report"]
        h5.attrs["scenario_yaml"] = yaml.safe_dump(sc)
    assert read_run(path).report_section == "generic"


def test_write_group_round_trip(tmp_path):
    data = GroupData({"x": np.arange(4, dtype=np.float32), "s": np.array([b"a", b"bc"], dtype=object)},
                     {"n": 2, "t": "text"}, {"child": GroupData({"y": np.eye(2)})})
    with h5py.File(tmp_path / "g.h5", "w") as h5:
        f = RunFile(h5)
        f.write_group("a/b", GroupData({"old": np.zeros(1)}))
        f.write_group("a/b", data)  # replaces
        assert "old" not in h5["a/b"]
        assert h5["a/b/x"].dtype == np.float32 and h5["a/b"].attrs["n"] == 2
        assert h5["a/b/s"].dtype.kind == "O" and list(h5["a/b/s"][...]) == [b"a", b"bc"]
        np.testing.assert_array_equal(h5["a/b/child/y"][...], np.eye(2))
