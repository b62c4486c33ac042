"""The sde-bias command line (sde_bias.cli): commands, exit codes, divergence flagging,
and a run killed with SIGKILL then resumed (subprocess)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from sde_bias import cli
from sde_bias.reader import load_run

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"


def test_help_documents_exit_codes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"  {code}" in out
    assert "diverged" in out and "user error" in out
    assert cli.main(["run", "--help"]) == 0
    assert "--resume" in capsys.readouterr().out


def test_usage_error_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["run"]) == 2


def test_validate(capsys, tmp_path):
    assert cli.main(["validate", str(TINY), str(ROOT / "scenarios" / "hyperbola.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok: " in out and "variants: quick" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("lr: 0.02", "lr: -0.02"))
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: training.lr: should be greater than 0 (got -0.02)" in err
    assert "Traceback" not in err
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "hyperbola.yaml" in out
    for name in ("sgd", "gd", "svag", "euler_maruyama", "milstein", "heun", "srk", "adaptive"):
        assert f"  {name} " in out


def test_run_inspect_plot(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", str(TINY), "--variant", "quick", "--set", "seeds.count=4", "--quiet"])
    assert code == 0
    from sde_bias.run import overrides_digest

    stem = f"tiny-quick-{overrides_digest(['seeds.count=4'])}"  # the default name with overrides
    out = tmp_path / "data" / "runs" / f"{stem}.h5"
    assert out.exists()
    figs = sorted(p.name for p in (tmp_path / "data" / "runs" / f"{stem}_plots").glob("*.png"))
    assert figs == ["balance.imbalance.png", "invariants.png", "loss.png", "params.png", "phase_plane.png"]
    capsys.readouterr()
    assert cli.main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny [variant quick]" in text and "--set seeds.count=4" in text
    assert "sgd" in text and "gd" in text and "loss (4, 3)" in text and "ok" in text
    assert cli.main(["plot", str(out), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    assert (tmp_path / "figs" / "loss.png").stat().st_size > 1000
    # re-running the stored scenario of a run file
    assert cli.main(["run", str(out), "--out", str(tmp_path / "again.h5"), "--quiet", "--no-plot"]) == 0
    a, b = load_run(out), load_run(tmp_path / "again.h5")
    np.testing.assert_array_equal(a["runners"]["sgd"]["records"]["loss"], b["runners"]["sgd"]["records"]["loss"])


def test_user_errors_exit_2_without_traceback(capsys, tmp_path):
    assert cli.main(["run", str(TINY), "--set", "training.lr=-1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training.lr [from --set training.lr=-1]" in err and "Traceback" not in err
    assert cli.main(["run", str(TINY), "--variant", "nope"]) == 2
    assert "no variant named 'nope'" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    assert cli.main(["inspect", str(junk)]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err


def test_internal_error_exits_1(capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("sde_bias.run.run_scenario", boom)
    assert cli.main(["run", str(TINY), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "kaboom" in err and "internal error" in err


def test_divergence_is_flagged_and_others_continue(capsys, tmp_path):
    out = tmp_path / "div.h5"
    code = cli.main([
        "run", str(TINY), "--out", str(out), "--quiet", "--no-plot", "--seeds", "8",
        "--set", "runners=[gd]", "--set", "training.lr=0.5", "--set", "init.std=1.5",
    ])
    assert code == 3
    assert "seeds diverged" in capsys.readouterr().err
    with h5py.File(out) as f:
        div = f["gd/diverged_at"][...]
        loss = f["gd/loss"][...]
        steps = f["gd/step"][...]
        assert "diverged" in f["gd"].attrs["status"]
    bad, good = div >= 0, div < 0
    assert bad.any() and good.any()
    assert np.all(np.isfinite(loss[good]))
    for s in np.flatnonzero(bad):
        assert 0 < div[s] <= 40
        assert np.all(np.isnan(loss[s, steps >= div[s]]))
        assert np.all(np.isfinite(loss[s, steps < div[s] - 9]))


SLOW = [
    "--set", "training.steps=300000", "--set", "training.record_every=1000",
    "--set", "training.chunk_records=60", "--set", "runners=[sgd]", "--seeds", "64",
]


def test_sigkill_then_resume_gives_identical_numbers(tmp_path):
    """Kill a running `sde-bias run` with SIGKILL after its second checkpoint, resume it,
    and compare with an uninterrupted run, bit for bit."""
    out = tmp_path / "killed.h5"
    tmp = out.with_name(out.name + ".tmp")
    cmd = [sys.executable, "-m", "sde_bias.cli", "run", str(TINY), "--out", str(out), "--no-plot", *SLOW]
    # a persistent compilation cache lets the resumed process reuse the killed one's
    # compiled chunk (same executable, so same numbers; it only saves time)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen = []
    deadline = time.time() + 120
    try:
        for line in proc.stderr:
            seen.append(line)
            if "chunk 2/5" in line:
                proc.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "".join(seen)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert tmp.exists() and not out.exists()
    with h5py.File(tmp) as f:
        assert int(f["sgd"].attrs["records_done"]) >= 121  # initial + two chunks of 60

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert "chunk 1/5" not in resumed.stderr and "chunk 5/5" in resumed.stderr
    assert out.exists() and not tmp.exists()

    t_ref = time.time()
    ref = tmp_path / "ref.h5"
    assert cli.main(["run", str(TINY), "--out", str(ref), "--no-plot", "--quiet", *SLOW]) == 0
    a, b = load_run(out), load_run(ref)
    for k in ("loss", "params", "balance/imbalance"):
        np.testing.assert_array_equal(a["runners"]["sgd"]["records"][k], b["runners"]["sgd"]["records"][k])
    np.testing.assert_array_equal(a["runners"]["sgd"]["last_params"], b["runners"]["sgd"]["last_params"])
    assert a["attrs"]["scenario_hash"] == b["attrs"]["scenario_hash"]


@pytest.mark.skipif(not any((Path(p) / "sde-bias").exists() for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="sde-bias entry point not on PATH")
def test_entry_point_installed():
    r = subprocess.run(["sde-bias", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "sde_bias" in r.stdout


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    import io

    from sde_bias.run import Progress

    tty = io.StringIO()
    p = Progress(stream=tty, tty=True)
    p.start("sgd", 1000)
    p.update(500, 1, 2)
    p.update(1000, 2, 2)
    p.finish()
    text = tty.getvalue()
    assert "\r" in text and "100%" in text and "1000/1000 steps" in text and "steps/s" in text and "left" in text
    pipe = io.StringIO()
    p = Progress(stream=pipe, tty=False)
    p.start("sgd", 1000)
    p.update(500, 1, 2)
    p.update(1000, 2, 2)
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("sgd: chunk 2/2, step 1000/1000")
    quiet = io.StringIO()
    p = Progress(stream=quiet, quiet=True)
    p.start("sgd", 10)
    p.update(10, 1, 1)
    p.finish("done")
    assert quiet.getvalue() == ""
