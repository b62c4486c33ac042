"""Output files under concurrency, kills and signals (issue 13), and reading any file.

* the output pre-flight refuses, before any compute, a directory, a folder that cannot be
  made or written, a name too long (also the default name from a long `name:`);
* default output names of `--set` runs differ; plain names stay plain;
* two processes, one output path: the second is refused at once and the first's result is
  intact (bit for bit);
* processes killed (os._exit, as SIGKILL: no cleanup) at >= 10 random points across chunk
  boundaries and around the final rename, each resumed, end bit for bit equal to an
  uninterrupted run; SIGTERM and SIGINT stop after the chunk's checkpoint with exit 130;
* inspect, plot and report on runs without noise, with one seed, with one record, and on
  damaged files: correct output or one line, exit 2.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from sde_bias import cli

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
HYPERBOLA = ROOT / "scenarios" / "hyperbola.yaml"
# tiny: 2 runners x 4 records; one record per chunk -> 4 checkpoints per runner
FINE = ["--set", "training.chunk_records=1", "--set", "seeds.count=3"]

# `sde-bias` with kill points: SDE_BIAS_TEST_KILL=EVENT:K ends the process with
# os._exit(137) (no cleanup, like SIGKILL) at the K-th EVENT; SDE_BIAS_TEST_SIGNAL=NAME:K
# sends itself the signal after the K-th append (records written, checkpoint next);
# SDE_BIAS_TEST_PAUSE=FILE waits after the 2nd append until FILE exists.
# `--chain SEED OUT ARGS...`: a chain of such processes, forked from this one after the
# imports (each child starts JAX afresh: a new process as far as JAX and the file are
# concerned, without paying the imports again); see test_kills_at_random_points...
DRIVER = r"""
import json, os, random, shutil, signal, sys, time
from sde_bias import cli, store
import diffrax, equinox, h5py, jax, scipy.stats  # noqa: F401 - before any fork

def patch(kill, sig, pause):
    counts = {}
    def hit(event):
        counts[event] = counts.get(event, 0) + 1
        if kill == f"{event}:{counts[event]}":
            os._exit(137)
    def wrap(name):
        orig = getattr(store.RunFile, name)
        def f(self, *a, **k):
            hit(name + "_before")
            r = orig(self, *a, **k)
            hit(name + "_after")
            if name == "append":
                n = counts["append_after"]
                if sig and sig.split(":")[1] == str(n):
                    os.kill(os.getpid(), getattr(signal, sig.split(":")[0]))
                if pause and n == 2:
                    print("paused", file=sys.stderr, flush=True)
                    while not os.path.exists(pause):
                        time.sleep(0.05)
            return r
        setattr(store.RunFile, name, f)
    for n in ("create_runner", "append", "save_state", "flush"):
        wrap(n)
    fin = store.finalize
    def finalize(tmp, out):
        hit("finalize_before"); fin(tmp, out); hit("finalize_after")
    store.finalize = finalize

def child(kill, argv):
    pid = os.fork()
    if pid == 0:
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")
            patch(kill, "", "")
            code = cli.main(argv)
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

if sys.argv[1] == "--chain":
    rng, out, argv = random.Random(int(sys.argv[2])), sys.argv[3], sys.argv[4:]
    events = ["create_runner_before", "create_runner_after", "append_before", "append_after",
              "save_state_before", "save_state_after", "flush_before", "flush_after"]
    first = [f"{rng.choice(events)}:{rng.choice([1, 2, 3, 5])}" for _ in range(4)] + ["finalize_before:1", "finalize_after:1"]
    rng.shuffle(first)
    kills, done = 0, 0
    while True:  # a point not reached completes the run; go on until 10 kills, then finish
        spec = first.pop(0) if first else "" if kills >= 10 else f"{rng.choice(events)}:{rng.choice([1, 2, 3, 5])}"
        rc = child(spec, argv)
        record = {"spec": spec, "rc": rc}
        if rc == 137:
            kills += 1
        elif rc == 0:
            record["file"] = f"{out}.done{done}"
            shutil.move(out, record["file"])
            done += 1
        print(json.dumps(record), flush=True)
        if rc not in (0, 137) or (rc == 0 and not spec) or done + kills > 30:
            break
else:
    patch(os.environ.get("SDE_BIAS_TEST_KILL", ""), os.environ.get("SDE_BIAS_TEST_SIGNAL", ""),
          os.environ.get("SDE_BIAS_TEST_PAUSE", ""))
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def sde_bias(args, env, extra=None, **kw):
    e = dict(env, **(extra or {}))
    return subprocess.run([sys.executable, "-c", DRIVER, *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=120, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    assert cli.main(["run", str(TINY), "--out", str(out), "--quiet", "--no-plot", *FINE]) == 0
    return out


def datasets(path) -> dict[str, np.ndarray]:
    """Every dataset of the runner groups and /data (the numbers of a run)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[...]
        f.visititems(visit)
        assert int(f.attrs["complete"]) == 1
    return out


def assert_same_numbers(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)


# ---------------------------------------------------------------------------- pre-flight
@pytest.fixture
def no_compute(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("computed before refusing the output")

    monkeypatch.setattr("sde_bias.build.build_setup", boom)


def run_refused(capsys, args, text):
    assert cli.main(["run", str(TINY), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err
    return err


def test_case6_output_preflight_refuses_before_compute(tmp_path, capsys, monkeypatch, no_compute):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    run_refused(capsys, ["--out", "adir"], "is a directory")
    run_refused(capsys, ["--out", "afile/x.h5", "--no-plot"], "is a file, not a folder")
    run_refused(capsys, ["--out", "afile/sub/x.h5", "--no-plot"], "is a file, not a folder")
    run_refused(capsys, ["--out", "afile/x.h5"], "is a file, not a folder")  # its figures folder too
    run_refused(capsys, ["--out", "/proc/x.h5", "--no-plot"], "cannot write in /proc")
    run_refused(capsys, ["--out", "a" * 300 + ".h5", "--no-plot"], "the file system allows")
    run_refused(capsys, ["--out", "b" * 300 + "/x.h5", "--no-plot"], "the file system allows")
    err = run_refused(capsys, ["--set", "name=" + "n" * 10000, "--no-plot"], "the file system allows")
    assert "name: the default output" in err and len(err) < 400
    run_refused(capsys, ["--set", "name=" + "n" * 10000], "name: the default figures folder")
    (tmp_path / "x.h5.tmp").mkdir()
    run_refused(capsys, ["--out", "x.h5", "--no-plot"], "in the way")
    assert not list(tmp_path.glob("**/*.h5.tmp*")) or (tmp_path / "x.h5.tmp").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_case6_unwritable_folder_is_refused(tmp_path, capsys, no_compute):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    run_refused(capsys, ["--out", str(ro / "x.h5"), "--no-plot"], "cannot write in")


def test_default_names_of_set_runs_differ(tmp_path):
    from sde_bias.run import default_output
    from sde_bias.scenario import load_scenario

    plain = default_output(load_scenario(HYPERBOLA))
    assert plain == Path("data/runs/hyperbola.h5")
    assert default_output(load_scenario(HYPERBOLA, "quick")) == Path("data/runs/hyperbola-quick.h5")
    a = default_output(load_scenario(HYPERBOLA, "quick", ["training.lr=0.01"]))
    b = default_output(load_scenario(HYPERBOLA, "quick", ["training.lr=1e-2"]))
    c = default_output(load_scenario(HYPERBOLA, "quick", ["training.lr=0.03"]))
    d = default_output(load_scenario(HYPERBOLA, "quick", seeds=4))
    assert a == b and a != c and d not in (a, c, plain)
    assert a.name.startswith("hyperbola-quick-") and len(a.stem) == len("hyperbola-quick-") + 8


# ---------------------------------------------------------------------------- two writers
def test_case12_second_writer_is_refused_and_the_first_result_intact(tmp_path, env, reference):
    out = tmp_path / "same.h5"
    go = tmp_path / "go"
    args = ["run", TINY, "--out", out, "--no-plot", *FINE]
    first = subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, args)], stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True, env=dict(env, SDE_BIAS_TEST_PAUSE=str(go)))
    try:
        deadline = time.time() + 120
        for line in first.stderr:
            if "paused" in line:
                break
            assert time.time() < deadline
        tmp = out.with_name(out.name + ".tmp")
        inode = tmp.stat().st_ino
        for extra in ([], ["--resume"]):
            t0 = time.time()
            second = sde_bias(args + extra, env)
            assert second.returncode == 2, second.stderr
            msg = second.stderr.strip()
            assert len(msg.splitlines()) == 1 and "being written by another sde-bias run" in msg, msg
            assert tmp.stat().st_ino == inode and not out.exists()  # nothing touched
            assert time.time() - t0 < 60
        go.write_text("")
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert out.exists() and not out.with_name(out.name + ".tmp").exists()
    assert_same_numbers(out, reference)


# ---------------------------------------------------------------------------- kills
def test_kills_at_random_points_resume_bit_for_bit(tmp_path, env, reference):
    """>= 10 kills (a seeded random schedule of points around chunk boundaries: before and
    after creating a runner, appending records, saving the checkpoint, flushing; and just
    before and just after the final rename), each followed by a process run with --resume;
    every run that completed is compared with the uninterrupted run, bit for bit."""
    import json

    out = tmp_path / "k.h5"
    args = ["run", TINY, "--out", out, "--no-plot", "--quiet", "--resume", *FINE]
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", DRIVER, "--chain", "13", *map(str, [out, *args])],
                       capture_output=True, text=True, env=env, timeout=300)
    records = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert r.returncode == 0 and records, r.stderr
    kills = [x["spec"] for x in records if x["rc"] == 137]
    assert all(x["rc"] in (0, 137) for x in records), records
    assert len(kills) >= 10 and "finalize_before:1" in kills and "finalize_after:1" in kills, records
    assert records[-1] == {"spec": "", "rc": 0, "file": records[-1]["file"]}
    for x in records:
        if x["rc"] == 0:
            assert_same_numbers(x["file"], reference)
    assert time.time() - t0 < 60, records


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_case_signal_stops_after_the_checkpoint_exit_130_then_resumes(tmp_path, env, reference, name):
    out = tmp_path / "s.h5"
    args = ["run", TINY, "--out", out, "--no-plot", *FINE]
    r = sde_bias(args, env, {"SDE_BIAS_TEST_SIGNAL": f"{name}:3"})
    assert r.returncode == 130, r.stderr
    assert f"{name} received: stopped after sgd's checkpoint at step 20" in r.stderr and "--resume" in r.stderr
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "r") as f:  # the chunk in progress was finished and checkpointed
        assert int(f["sgd"].attrs["records_done"]) == 3 and f["sgd/loss"].shape[1] == 3
    # the lock was released: the next run takes it and resumes
    r = sde_bias(args + ["--resume", "--quiet"], env)
    assert r.returncode == 0, r.stderr
    assert_same_numbers(out, reference)


# ---------------------------------------------------------------------------- reading files
@pytest.fixture(scope="module")
def edge_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge")
    runs = {
        "zero_noise": ["--set", "noise.label_noise=0"],
        "one_seed": ["--seeds", "1"],
        "one_record": ["--set", "training.steps=20", "--set", "training.record_every=20"],
    }
    for name, sets in runs.items():
        assert cli.main(["run", str(HYPERBOLA), "--variant", "quick", "--seeds", "2", "--out", str(d / f"{name}.h5"),
                         "--quiet", "--no-plot", *sets]) == 0
    # an interrupted run holding only the initial record (Ctrl-C before the first chunk ended)
    from sde_bias import store

    orig = store.RunFile.append

    def append(self, g, steps, *a, **k):
        if steps[0] > 0:
            raise KeyboardInterrupt
        return orig(self, g, steps, *a, **k)

    store.RunFile.append = append
    try:
        assert cli.main(["run", str(HYPERBOLA), "--variant", "quick", "--seeds", "2", "--out", str(d / "x.h5"),
                         "--quiet", "--no-plot"]) == 130
    finally:
        store.RunFile.append = orig
    (d / "x.h5.tmp").rename(d / "initial_only.h5")
    return d


@pytest.mark.parametrize("name", ["zero_noise", "one_seed", "one_record", "initial_only"])
def test_case5_inspect_plot_report_on_legitimate_edge_runs(edge_runs, tmp_path, capsys, name):
    path = edge_runs / f"{name}.h5"
    assert cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert ("complete   NO (interrupted" if name == "initial_only" else "complete   yes") in text
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    assert (tmp_path / "figs" / "loss.png").stat().st_size > 1000
    assert cli.main(["report", str(path), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "experiments.md").read_text()
    assert "Hyperbolas" in md
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| sgd ") or ln.startswith("| gd ")}
    if name == "zero_noise":  # closed form 0: the report says so instead of dividing by it
        assert "closed form lr δ² = 0" in md and "(closed form 0)" in md
    if name == "one_seed":  # no standard error from one seed
        assert "± nan" in rows["sgd"] and "± 0.0e+00" not in rows["sgd"]
    if name in ("one_record", "initial_only"):
        with h5py.File(path) as f:
            assert f["sgd/loss"].shape == (2, 2 if name == "one_record" else 1)
        assert "nan ± nan" in rows["sgd"]  # no decay rate from fewer than 3 records


def damaged_files(src: Path, d: Path) -> dict[str, tuple[Path, str]]:
    out = {}

    def put(name, text):
        out[name] = (d / name, text)

    (d / "random.h5").write_bytes(os.urandom(4096))
    put("random.h5", "not a readable HDF5 file")
    (d / "empty.h5").write_bytes(b"")
    put("empty.h5", "not a readable HDF5 file")
    with h5py.File(d / "plain.h5", "w") as f:
        f["x"] = [1, 2]
    put("plain.h5", "not an sde_bias run file")
    data = src.read_bytes()
    (d / "truncated.h5").write_bytes(data[: len(data) // 2])
    put("truncated.h5", "not a readable HDF5 file")
    (d / "dir.h5").mkdir()
    put("dir.h5", "not a file")

    def variant(name, fn, text):
        shutil.copy(src, d / name)
        with h5py.File(d / name, "r+") as f:
            fn(f)
        put(name, text)

    def yaml_edit(old, new):
        def fn(f):
            t = f.attrs["scenario_yaml"]
            t = t.decode() if isinstance(t, bytes) else t
            assert old in t
            f.attrs["scenario_yaml"] = t.replace(old, new)
        return fn

    variant("broken_yaml.h5", lambda f: f.attrs.__setitem__("scenario_yaml", "{{{"), "scenario_yaml: line 1")
    variant("mistyped_yaml.h5", yaml_edit("label_noise: 0.0", "label_noise: abc"), "noise.label_noise")
    variant("zero_lr_yaml.h5", yaml_edit("lr: 0.02", "lr: 0"), "training.lr")
    variant("no_yaml.h5", lambda f: f.attrs.__delitem__("scenario_yaml"), "no scenario_yaml")
    variant("bad_lr.h5", lambda f: f.attrs.__setitem__("lr", "abc"), "root attribute lr")
    variant("zero_lr.h5", lambda f: f.attrs.__setitem__("lr", 0.0), "root attribute lr")
    variant("no_time.h5", lambda f: f["sgd"].__delitem__("time"), "runner sgd has no dataset 'time'")

    def short_loss(f):
        del f["sgd/loss"]
        ds = f["sgd"].create_dataset("loss", data=np.zeros((2, 1)))
        ds.attrs["observable"] = "loss"
    variant("ragged.h5", short_loss, "loss has shape (2, 1)")
    return out


def test_case5_inspect_plot_report_on_damaged_files_one_line_exit_2(edge_runs, tmp_path):
    files = damaged_files(edge_runs / "zero_noise.h5", tmp_path)
    for name, (path, text) in files.items():
        for cmd in (["inspect", path], ["plot", path, "--out", tmp_path / "figs"], ["report", path, "--out", tmp_path / "rep"]):
            r = subprocess.run([sys.executable, "-m", "sde_bias.cli", *map(str, cmd)], capture_output=True, text=True, timeout=120) \
                if name == "truncated.h5" and cmd[0] == "inspect" else None
            if r is not None:  # one CLI process, as a user would run it
                code, err = r.returncode, r.stderr
            else:
                import contextlib
                import io

                buf = io.StringIO()
                with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
                    code = cli.main(list(map(str, cmd)))
                err = buf.getvalue()
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert code == 2 and len(lines) == 1 and text in lines[0] and str(path.name) in lines[0], (name, cmd[0], err)


def test_case5_report_on_a_stored_scenario_with_no_noise_old_failure(edge_runs, tmp_path):
    """The issue's ZeroDivisionError: report on a label_noise 0 run (now a number, not a crash)."""
    from sde_bias.report import build_report

    md, sections = build_report([str(edge_runs / "zero_noise.h5")], str(tmp_path / "r"))
    assert sections[0].numbers["rate_closed_form"] == 0.0
