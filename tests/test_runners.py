"""The runners' shared divergence handling (sde_bias.runners), checked against the same
runner without a threshold: a seed's records are those of the free run until it leaves
the bounds and NaN from there on, its ``diverged_at`` says where, and its state stays at
the last good one."""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
RECORDS, EVERY = 4, 10


def _run(preset_name: str, threshold: float | None):
    from sde_bias.build import build_setup
    from sde_bias.presets import load_presets
    from sde_bias.scenario import load_scenario

    over = ["seeds.count=8"] + ([f"training.divergence_threshold={threshold}"] if threshold is not None else [])
    setup = build_setup(load_scenario(TINY, overrides=over))
    runner = load_presets()[preset_name].make_runner(setup)
    ens, rec = runner.advance(runner.init(setup), setup, RECORDS, EVERY)
    return setup, np.asarray(rec["params"]), np.asarray(ens.diverged_at), np.asarray(ens.theta)


@pytest.mark.parametrize("preset", ["sgd", "adaptive"])
def test_divergence_freezes_and_masks_like_the_free_run(preset):
    setup, free, free_div, _ = _run(preset, None)
    assert np.all(free_div == -1) and np.all(np.isfinite(free))
    size = np.max(np.abs(free), axis=-1)  # [S, R]: max |theta| at each record
    # a threshold between the seeds' sizes at the second record: some seeds cross it, some not
    thr = float(np.median(size[:, 1]))
    _, rec, div, theta = _run(preset, thr)
    crossed = np.any(size >= thr, axis=1)
    assert 0 < crossed.sum() < len(crossed)
    theta0 = np.asarray(setup.theta0)
    for s in range(size.shape[0]):
        steps = EVERY * np.arange(1, RECORDS + 1)
        if div[s] < 0:
            np.testing.assert_array_equal(rec[s], free[s])
            continue
        kept = steps < div[s]
        np.testing.assert_array_equal(rec[s, kept], free[s, kept])
        assert np.all(np.isnan(rec[s, ~kept]))
        assert np.all(size[s, kept] < thr)
        last = rec[s, kept][-1] if kept.any() else theta0[s]
        if preset == "adaptive":
            # the first record at or above the threshold; the state is the last good record
            first_bad = int(np.argmax(size[s] >= thr))
            assert div[s] == steps[first_bad]
            np.testing.assert_array_equal(theta[s], last)
        else:
            # a unit step inside the first record interval whose end is at or above it,
            # or earlier (the path may cross and come back between records)
            assert 1 <= div[s] <= steps[int(np.argmax(size[s] >= thr))] if crossed[s] else div[s] >= 1
            if div[s] == 1:  # failed at its first step: frozen at theta0 (which may be above thr)
                np.testing.assert_array_equal(theta[s], theta0[s])
            else:
                assert np.max(np.abs(theta[s])) < thr
    # every seed that crossed at a record has diverged
    assert np.all(div[crossed] >= 0)
