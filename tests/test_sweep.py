"""Sweeps (sde_bias.sweep_*): the value forms, validation errors, batched points against
single runs, resume after SIGKILL, a Dask LocalCluster against in-process, two writers of
one path, and the file read back by xarray."""

import math
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from sde_bias import cli
from sde_bias.scenario import load_scenario
from sde_bias.sweep_spec import SweepSpecError, make_plan, parse_values

from helpers import ROOT, TINY

GRID = ["--grid", "training.lr=0.01,0.02", "--grid", "noise.label_noise=0.0,0.5"]


# ----------------------------------------------------------------------------- the spec
def test_value_forms():
    lin = parse_values({"linspace": [0.1, 0.7, 4]}, "k")
    assert lin[0] == 0.1 and lin[-1] == 0.7 and len(lin) == 4
    assert all(math.isclose(b - a, 0.2) for a, b in zip(lin, lin[1:]))
    log = parse_values({"logspace": [1e-3, 1e-1, 3]}, "k")
    assert log[0] == 1e-3 and log[-1] == 1e-1 and math.isclose(log[1], 1e-2)
    assert parse_values({"range": [2, 8, 3]}, "k") == [2, 5]
    plan = make_plan({"grid": {"a.b": [1, 2], "c": [3, 4, 5]}, "zip": {"d": [6, 7], "e": [8, 9]}})
    assert plan.shape == (2, 3, 2) and len(plan.points) == 12
    assert plan.points[7] == {"a.b": 2, "c": 3, "d": 7, "e": 9} and plan.index(7) == (1, 0, 1)
    for bad in ([], {"linspace": [0, 1]}, {"logspace": [0, 1, 3]}, {"range": [3, 3]}, {"grid": [1]}):
        with pytest.raises(SweepSpecError):
            parse_values(bad, "k")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--grid", "training.lrr=0.1,0.2"], ["sweep point 0", "training.lrr=0.1", "unknown key"]),
        (["--grid", "training.lr="], ["--grid training.lr", "empty"]),
        (["--zip", "training.lr=0.1,0.2", "--zip", "init.std=0.1"], ["sweep.zip", "training.lr has 2", "init.std has 1"]),
        (["--grid", "training.lr=0.1,-0.2"], ["sweep point 1", "training.lr=-0.2", "greater than 0"]),
    ],
    ids=["bad key", "empty grid", "zip lengths", "invalid point"],
)
def test_validation_errors_are_one_line_exit_2(args, words, capsys, tmp_path):
    rc = cli.main(["sweep", str(TINY), "--out", str(tmp_path / "s.h5"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "s.h5").exists()


def test_validate_checks_the_sweep_block(tmp_path, capsys):
    text = TINY.read_text() + "sweep:\n  grid:\n    training.lr: [0.01, 0.02]\n    init.std: {linspace: [0.0, 0.2, 3]}\n"
    good = tmp_path / "good.yaml"
    good.write_text(text)
    assert cli.main(["validate", str(good)]) == 0
    assert "sweep: 6 points" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("[0.01, 0.02]", "[0.01, -1.0]"))
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sweep point" in err and "training.lr=-1.0" in err


# ----------------------------------------------------------------------------- batched = single runs
def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _records(path, runner, idx=()):
    with h5py.File(path) as f:
        g = f[runner]
        return {k: g[k][idx] for k, ds in g.items() if "observable" in ds.attrs}, g["diverged_at"][idx]


def _cli(*args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "sde_bias.cli", *args], capture_output=True, text=True, env=_env(), timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


SINGLE_POINTS = [((0, 1), (0.01, 1.0)), ((1, 0), (0.03, 0.5))]


def _check_points(sweep_path, singles, exact: bool, runners):
    for idx, single in singles:
        for runner in runners:
            want, want_div = _records(single, runner)
            got, got_div = _records(sweep_path, runner, idx)
            assert set(want) == set(got)
            np.testing.assert_array_equal(got_div, want_div)
            for k in want:
                if exact:
                    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{runner} {k}")
                else:
                    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=f"{runner} {k}")


def test_batched_points_equal_single_runs_bit_for_bit(tmp_path):
    """``sde-bias sweep`` runs 4 points x 4 seeds as one compiled program; each point's
    records equal ``sde-bias run --set`` of that point bit for bit (float64, one device:
    on several devices XLA compiles the vmapped step for the members per device, and a
    different count can change the last bit, as between single runs with 4 and 8 seeds)."""
    base = ["--set", "runners=[sgd, euler_maruyama]", "--devices", "1"]
    sweep = tmp_path / "sweep.h5"
    r = _cli("sweep", str(TINY), *base, "--grid", "training.lr=0.01,0.03", "--grid", "noise.label_noise=0.5,1.0",
             "--out", str(sweep))
    assert "(4 points in 1 groups" in r.stdout  # one program for the four points
    singles = []
    for idx, (lr, delta) in SINGLE_POINTS:
        out = tmp_path / f"single_{lr}.h5"
        _cli("run", str(TINY), *base, "--set", f"training.lr={lr}", "--set", f"noise.label_noise={delta}",
             "--out", str(out), "--no-plot")
        singles.append((idx, out))
    _check_points(sweep, singles, exact=True, runners=("sgd", "sde/euler_maruyama"))


def test_shared_and_swept_data_equal_single_runs_bit_for_bit(tmp_path):
    """A teacher-student dataset with its draw swept: the training and test sets differ
    between points (they travel with the members), the rest is shared; each point equals
    its single run bit for bit (float64, one device: in subprocesses, because an earlier
    in-process ``cli.main`` may have split this process's CPU into two devices, and then
    the eigenvalues of ``log_det_gram`` can differ in the last bit). (The shared case is the
    tiny scenario of the test above, whose data is equal in every point.)"""
    scen = str(ROOT / "scenarios" / "deep_linear.yaml")
    # no theory block: the single run would add its balance check, which sweeps do not run
    base = ["--variant", "quick", "--set", "runners=[sgd]", "--set", "theory=null", "--seeds", "2", "--devices", "1"]
    sweep = tmp_path / "sweep.h5"
    r = _cli("sweep", scen, *base, "--grid", "data.seed=0,1", "--grid", "training.lr=0.01,0.02", "--out", str(sweep))
    assert "(4 points in 1 groups" in r.stdout
    single = tmp_path / "single.h5"
    _cli("run", scen, *base, "--set", "data.seed=1", "--set", "training.lr=0.02", "--out", str(single), "--no-plot")
    _check_points(sweep, [((1, 1), single)], exact=True, runners=("sgd",))
    other, _ = _records(sweep, "sgd", (0, 1))
    assert not np.array_equal(other["test_loss"], _records(single, "sgd")[0]["test_loss"])  # the draw matters


def test_batched_points_equal_single_runs_float32(tmp_path):
    """In float32 to rounding: the single run folds sqrt(lr) in double precision and rounds
    once, the sweep computes it from the float32 lr (sde_bias/sweep_run.py)."""
    from sde_bias.run import run_scenario
    from sde_bias.sweep_driver import SweepRequest, run_sweep

    base = ["precision=float32", "runners=[sgd, euler_maruyama]"]
    req = SweepRequest(
        TINY, overrides=tuple(base), grid=(("training.lr", [0.01, 0.03]), ("noise.label_noise", [0.5, 1.0])),
        out=tmp_path / "sweep.h5",
    )
    res = run_sweep(req, quiet=True)
    assert res.num_groups == 1 and res.num_points == 4
    singles = []
    for idx, (lr, delta) in SINGLE_POINTS[1:]:  # one point (not the group's first) keeps it fast
        sc = load_scenario(TINY, overrides=base + [f"training.lr={lr}", f"noise.label_noise={delta}"])
        singles.append((idx, run_scenario(sc, tmp_path / f"single_{lr}.h5", quiet=True).path))
    _check_points(res.path, singles, exact=False, runners=("sgd", "sde/euler_maruyama"))


def test_diverging_point_is_recorded_and_exit_3(tmp_path, capsys):
    out = tmp_path / "d.h5"
    rc = cli.main(["sweep", str(TINY), "--grid", "training.lr=0.02,4.0", "--out", str(out), "-q"])
    assert rc == 3
    assert "training.lr=4.0" in capsys.readouterr().err
    with h5py.File(out) as f:
        div = f["sgd"]["diverged_at"][...]
        assert int(f.attrs["complete"]) == 1
    assert np.all(div[0] == -1) and np.all(div[1] > 0)  # lr 4: |1 - lr u^2| > 1 on the hyperbola


# ----------------------------------------------------------------------------- the CLI in subprocesses
def _cmd(out, *extra):
    return [sys.executable, "-m", "sde_bias.cli", "sweep", str(TINY), *GRID, "--out", str(out), *extra]


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) and n != "point_group" else None)
    return out


def _assert_same_data(a, b):
    da, db = _datasets(a), _datasets(b)
    assert da.keys() == db.keys()
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    r = subprocess.run(_cmd(out, "-q"), capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_xarray_opens_every_group_with_the_swept_dims(reference):
    import xarray as xr

    from sde_bias import load_sweep

    with h5py.File(reference) as f:
        groups = []
        f.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) and "preset" in o.attrs else None)
    assert set(groups) == {"sgd", "gd"}
    for g in groups:
        with xr.open_dataset(reference, group=g, engine="h5netcdf") as ds:
            assert ds["loss"].dims == ("training.lr", "noise.label_noise", "seed", "step")
            assert ds["params"].dims[:4] == ("training.lr", "noise.label_noise", "seed", "step")
            np.testing.assert_array_equal(ds["training.lr"].values, [0.01, 0.02])
            np.testing.assert_array_equal(ds["noise.label_noise"].values, [0.0, 0.5])
            # time = step * lr at each point
            np.testing.assert_allclose(ds["time"].sel({"training.lr": 0.02, "noise.label_noise": 0.5}), 0.02 * ds["step"])
            assert ds["seed_value"].dims == ("training.lr", "noise.label_noise", "seed")
    ds = load_sweep(reference)
    assert ds["loss"].sizes == {"training.lr": 2, "noise.label_noise": 2, "seed": 4, "step": 5}
    ds.close()


def test_resume_after_sigkill_gives_identical_data(reference, tmp_path):
    out = tmp_path / "r.h5"
    cmd = _cmd(out, "--group-points", "1")  # 4 groups of one point each
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    t0 = time.time()
    try:
        for line in proc.stderr:
            if "group 1/4 done" in line or "done:" in line:
                break
            assert time.time() - t0 < 300, "no group finished"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not out.exists() and out.with_name("r.h5.tmp").exists()
    with h5py.File(out.with_name("r.h5.tmp")) as f:
        written = int(f["point_done"][...].sum())
    assert 1 <= written < 4
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{written} of 4 groups already written" in r.stderr
    _assert_same_data(out, reference)


def test_local_cluster_equals_in_process(reference, tmp_path):
    """Same data as in-process; the workers' progress inside a group reaches the client
    (every chunk, with the rate limit set to 0 s: 2 runners x 2 chunks, so 25 %, 50 %, 75 %)."""
    out = tmp_path / "dask.h5"
    env = dict(_env(), SDE_BIAS_PROGRESS_EVERY_S="0")
    r = subprocess.run(_cmd(out, "--dask", "local:2"), capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LocalCluster with 2 workers" in r.stderr
    assert re.search(r"group 1/\d+: (25|50|75)% \((sgd|gd), on a worker\)", r.stderr), r.stderr[-3000:]
    _assert_same_data(out, reference)


def test_second_writer_of_a_path_is_refused(reference, tmp_path):
    out = tmp_path / "l.h5"
    first = subprocess.Popen(_cmd(out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env())
    try:
        for line in first.stderr:  # the lock is held from before the first group starts
            if line.startswith("group 1/"):
                break
        first.send_signal(signal.SIGSTOP)  # the first writer holds the path, paused mid-sweep
        t0 = time.time()
        try:
            second = subprocess.run(_cmd(out), capture_output=True, text=True, env=_env(), timeout=120)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2
        assert "being written by another" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert time.time() - t0 < 60
        first.stderr.read()
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
    _assert_same_data(out, reference)


def test_sweep_points_read_as_the_hand_made_variant_runs(tmp_path):
    """``sde-bias report`` reads a sweep file point by point (sde_bias.reader.read_sweep_points):
    an ``init.std`` point is the run of a hand-made ``init_<value>`` variant, same variant name,
    scenario, steps, seeds and records (bit for bit: float64; the hyperbola's records do not
    depend on how the members are split over devices)."""
    from sde_bias.reader import read_run, read_sweep_points
    from sde_bias.report.assemble import _read
    from sde_bias.run import run_scenario
    from sde_bias.sweep_driver import SweepRequest, run_sweep

    scen = tmp_path / "tiny.yaml"
    scen.write_text(TINY.read_text() + "  init_0.2: {init: {std: 0.2}}\n")
    res = run_sweep(SweepRequest(scen, grid=(("init.std", [0.05, 0.2]),), out=tmp_path / "sweep.h5"), quiet=True)
    single = run_scenario(load_scenario(scen, "init_0.2"), tmp_path / "single.h5", quiet=True).path
    points = _read(str(res.path))
    assert [p.variant for p in points] == ["init_0.05", "init_0.2"]
    assert [p.variant for p in read_sweep_points(res.path)] == ["init_0.05", "init_0.2"]
    want, got = read_run(single), points[1]
    assert got.scenario == want.scenario and got.name == want.name
    assert (got.lr, got.total_steps, got.num_seeds) == (want.lr, want.total_steps, want.num_seeds)
    assert got.command() == f"sde-bias run {scen} --set init.std=0.2"
    assert set(got.runners) == set(want.runners)
    for g, w in want.runners.items():
        r = got.runners[g]
        for k in ("seed", "time", "step", "diverged_at", "last_params"):
            np.testing.assert_array_equal(getattr(r, k), getattr(w, k), err_msg=f"{g} {k}")
        assert r.records.keys() == w.records.keys()
        for k in w.records:
            np.testing.assert_array_equal(r.records[k], w.records[k], err_msg=f"{g} {k}")
    assert not np.array_equal(points[0].runners["sgd"].records["loss"], got.runners["sgd"].records["loss"])


def test_a_group_in_several_calls_equals_one_call(tmp_path, monkeypatch):
    """A group whose members' state is large runs in calls of a few points
    (sweep_run.points_per_call); the numbers do not depend on the split."""
    import jax.numpy as jnp

    from sde_bias import sweep_run
    from sde_bias.sweep_driver import SweepRequest, run_sweep

    theta0 = jnp.zeros((64, 800), jnp.float32)  # 64 seeds x 800 parameters: 200 KiB per point
    assert sweep_run.points_per_call(16, 64, theta0) == 2  # 512 KiB -> 2 of the 16 points per call
    assert sweep_run.points_per_call(5, 64, theta0) == 1 and sweep_run.points_per_call(3, 1, theta0) == 3
    grid = (("training.lr", [0.01, 0.02]), ("noise.label_noise", [0.5, 1.0]))
    one = run_sweep(SweepRequest(TINY, grid=grid, out=tmp_path / "one.h5"), quiet=True).path
    calls = []
    run = sweep_run._run
    monkeypatch.setattr(sweep_run, "_run", lambda *a, **k: calls.append(a[1].num_seeds) or run(*a, **k))
    monkeypatch.setattr(sweep_run, "MEMBER_STATE_BYTES", 1)  # one point per call
    split = run_sweep(SweepRequest(TINY, grid=grid, out=tmp_path / "split.h5"), quiet=True).path
    assert calls == [4] * 8  # 2 runners x 4 calls of one point (4 seeds)
    for runner in ("sgd", "gd"):
        a, da = _records(one, runner, ())
        b, db = _records(split, runner, ())
        np.testing.assert_array_equal(da, db)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{runner} {k}")


def test_progress_within_a_group_reaches_the_end():
    """run_group reports the fraction of the group done after every chunk of records."""
    from sde_bias.presets import load_presets
    from sde_bias.sweep_run import run_group

    presets = load_presets()
    scs = [load_scenario(TINY, overrides=[f"training.lr={lr}"]) for lr in (0.01, 0.02)]
    seen = []
    run_group(scs, [0, 1], presets, on_chunk=lambda runner, f: seen.append((runner, f)))
    # 2 runners x 1 call x 2 chunks (4 records, chunk_records 2)
    assert [r for r, _ in seen] == ["sgd", "sgd", "gd", "gd"]
    np.testing.assert_allclose([f for _, f in seen], [0.25, 0.5, 0.75, 1.0])
