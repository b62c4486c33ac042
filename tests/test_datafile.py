"""Bring your own data: ``data: {type: file, path, x, y[, test_x, test_y]}`` in .npz, .h5 and
.csv, checked against the model's input and output shapes at validation (one-line errors
naming data.path / data.x and the shapes). A run on a csv file with theory is in
tests/test_user_models.py::test_worked_examples_run_end_to_end_with_theory."""

import h5py
import numpy as np
import pytest

from sde_bias.build import build_problem
from sde_bias.scenario import ScenarioError, scenario_from_dict

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(10, 3)), RNG.normal(size=10)
TX, TY = RNG.normal(size=(5, 3)), RNG.normal(size=5)


def _scenario(data, model=None, **extra):
    return {
        "name": "filedata",
        "precision": "float64",
        "model": model or {"type": "hadamard", "dim": 3},
        "init": {"std": 0.3},
        "data": data,
        "noise": {"scheme": "with_replacement", "batch_size": 2},
        "training": {"lr": 0.1, "steps": 2, "record_every": 1},
        "runners": ["gd"],
        "record": ["loss", "test_loss"] if "test_x" in data else ["loss"],
        **extra,
    }


def _write(tmp_path, fmt):
    if fmt == "npz":
        p = tmp_path / "d.npz"
        np.savez(p, inputs=X, labels=Y, tx=TX, ty=TY)
        return p, {"x": "inputs", "y": "labels", "test_x": "tx", "test_y": "ty"}
    if fmt == "h5":
        p = tmp_path / "d.h5"
        with h5py.File(p, "w") as f:
            f["train/x"], f["train/y"], f["test/x"], f["test/y"] = X, Y, TX, TY
        return p, {"x": "train/x", "y": "train/y", "test_x": "test/x", "test_y": "test/y"}
    p = tmp_path / "d.csv"
    rows = ["x_0,x_1,x_2,target"] + [",".join(repr(float(v)) for v in (*x, y)) for x, y in zip(X, Y)]
    p.write_text("\n".join(rows) + "\n")
    return p, {"x": "x", "y": "target"}


@pytest.mark.parametrize("fmt", ["npz", "h5", "csv"])
def test_each_format_loads_with_the_model_shapes(tmp_path, fmt):
    path, keys = _write(tmp_path, fmt)
    sc = scenario_from_dict(_scenario({"type": "file", "path": str(path), **keys}), "f.yaml")
    built = build_problem(sc)
    pb = built.problem
    np.testing.assert_array_equal(np.asarray(pb.train.x), X)
    np.testing.assert_array_equal(np.asarray(pb.train.y), Y)
    np.testing.assert_array_equal(built.extras["train_x"], X)
    if fmt != "csv":
        np.testing.assert_array_equal(np.asarray(pb.test.x), TX)
        np.testing.assert_array_equal(np.asarray(pb.test.y), TY)
    else:
        assert pb.test is None


def test_csv_columns_by_list_and_reshape_to_the_input(tmp_path):
    """x from a list of column names, y from the numbered columns o0, o1: the relu model
    takes (3,) inputs and gives (2,) outputs."""
    p = tmp_path / "r.csv"
    rows = ["a,b,c,o0,o1"] + [",".join(repr(float(v)) for v in r) for r in RNG.normal(size=(6, 5))]
    p.write_text("\n".join(rows) + "\n")
    table = np.loadtxt(p, delimiter=",", skiprows=1)
    sc = scenario_from_dict(
        _scenario({"type": "file", "path": str(p), "x": ["a", "b", "c"], "y": "o"},
                  model={"type": "relu", "in_dim": 3, "hidden": 2, "out_dim": 2}), "f.yaml")
    pb = build_problem(sc).problem
    np.testing.assert_array_equal(np.asarray(pb.train.x), table[:, :3])
    np.testing.assert_array_equal(np.asarray(pb.train.y), table[:, 3:])


def _error(data, tmp_path, **kw) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(_scenario(data, **kw), "f.yaml")
    msg = str(e.value)
    assert "Traceback" not in msg and len(msg.splitlines()) == 1, msg
    return msg


def test_file_errors_name_the_key_and_the_shapes(tmp_path):
    path, keys = _write(tmp_path, "npz")
    base = {"type": "file", "path": str(path), "x": "inputs", "y": "labels"}
    msg = _error({**base, "path": str(tmp_path / "none.npz")}, tmp_path)
    assert "f.yaml: data.path: no such file" in msg
    (tmp_path / "d.txt").write_text("1 2\n")
    assert "data.path: unknown format '.txt'" in _error({**base, "path": str(tmp_path / "d.txt")}, tmp_path)
    msg = _error({**base, "x": "X"}, tmp_path)
    assert "data.x: no array 'X' in" in msg and "(arrays: inputs, labels, tx, ty)" in msg
    msg = _error(base, tmp_path, model={"type": "hadamard", "dim": 4})
    assert "data.x: has shape (10, 3) in" in msg and "one input of model hadamard has shape (4,), so it needs shape (n, 4)" in msg
    msg = _error({**base, "y": "tx"}, tmp_path)
    assert "data.y: has shape (5, 3)" in msg and "needs shape (n,)" in msg
    np.savez(tmp_path / "short.npz", inputs=X, labels=Y[:7])
    assert "data.y: has 7 samples" in _error({**base, "path": str(tmp_path / "short.npz")}, tmp_path)
    bad = X.copy()
    bad[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", inputs=bad, labels=Y)
    assert "data.x: has non-finite values" in _error({**base, "path": str(tmp_path / "nan.npz")}, tmp_path)
    assert "data.test_y: give both test_x and test_y" in _error({**base, "test_x": "tx"}, tmp_path)
    assert "noise.batch_size: larger than the dataset (10 samples)" in _error(base, tmp_path, noise={"scheme": "with_replacement", "batch_size": 11})
    (tmp_path / "bad.csv").write_text("x,y\n1.0,2.0\n3.0,oops\n")
    assert "data.path: " in _error({**base, "path": str(tmp_path / "bad.csv"), "x": "x", "y": "y"}, tmp_path) and "line 3" in _error(
        {**base, "path": str(tmp_path / "bad.csv"), "x": "x", "y": "y"}, tmp_path)


def test_index_inputs_from_a_file_are_checked_against_the_matrix(tmp_path):
    mf = {"type": "matrix_factorization", "rows": 3, "rank": 1, "cols": 2}
    np.savez(tmp_path / "ok.npz", x=np.array([[0, 1], [2, 0]]), y=np.array([1.0, -1.0]))
    sc = scenario_from_dict(_scenario({"type": "file", "path": str(tmp_path / "ok.npz"), "x": "x", "y": "y"}, model=mf,
                                      noise={"scheme": "full_batch"}), "f.yaml")
    pb = build_problem(sc).problem
    assert str(pb.train.x.dtype) == "int32"
    np.testing.assert_array_equal(np.asarray(pb.train.x), [[0, 1], [2, 0]])
    np.savez(tmp_path / "bad.npz", x=np.array([[0, 1], [3, 0]]), y=np.array([1.0, -1.0]))
    msg = _error({"type": "file", "path": str(tmp_path / "bad.npz"), "x": "x", "y": "y"}, tmp_path, model=mf,
                 noise={"scheme": "full_batch"})
    assert "data.x: model matrix_factorization takes integer indices with 0 <= x[0] < 3, 0 <= x[1] < 2" in msg
