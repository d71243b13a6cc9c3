"""Experiment presets and multirun sweeps: parent + children in MLflow, failures, parallel jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, compose, wait_for

from pipeline.config import composition
from pipeline.tracking import contract

SHRUNK = ["trainer.epochs=1", "dataset.max_samples=200", "tracking.log_model=false"]


@pytest.mark.parametrize("name", composition.group_options("experiment"))
def test_every_preset_composes_with_a_sweep(name):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"experiment={name}"]
    if name in ("transfer_learning", "tune_transfer", "fine_tune", "tune_folder"):  # image-folder presets
        overrides.append("dataset.path=images")
    composition.register_experiments()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(composition.CONF_DIR)):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    assert "seed" in cfg.hydra.sweeper.params
    assert cfg.tracking.experiment_name == name
    run = composition.validate(compose(overrides))
    assert run.tracking.experiment_name == name


def test_presets_hold_only_deltas():
    for path in composition.EXPERIMENTS_DIR.glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# @package _global_"), path.name
        assert len([line for line in text.splitlines() if line and not line.startswith("#")]) < 25, path.name


def parent_and_children(store):
    runs = store.runs()
    parents = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get(contract.PARENT) == parents[0].info.run_id]
    return parents[0], children


@pytest.mark.slow
def test_shrunk_factorial_sweep_nests_tagged_children_under_one_parent(store, tmp_path):
    result = cli("-m", "experiment=stride_vs_pool", "seed=0,1", *SHRUNK, *store.overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = parent_and_children(store)
    assert parent.info.status == "FINISHED" and len(store.runs()) == 9
    assert json.loads(parent.data.tags[contract.FACTORS]) == ["downsample", "regularization"]
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    sweep_id = parent.data.tags[contract.SWEEP_ID]
    assert {c.data.tags[contract.SWEEP_ID] for c in children} == {sweep_id}
    variants = {(c.data.tags[contract.VARIANT], c.data.tags[contract.SEED]) for c in children}
    assert variants == {
        (f"downsample={d},regularization={r}", s)
        for d in ("stride", "maxpool")
        for r in ("none", "dropout")
        for s in ("0", "1")
    }
    assert all(c.data.tags[contract.factor_tag("downsample")] in ("stride", "maxpool") for c in children)
    # progress in the terminal, and the comparison logged on the parent
    assert "[sweep] job 8/8" in result.stdout + result.stderr
    artifacts = {a.path for a in store.client().list_artifacts(parent.info.run_id, "comparison")}
    assert "comparison/report.html" in artifacts and "comparison/summary.csv" in artifacts
    assert any(a.path == "sweep_summary.md" for a in store.client().list_artifacts(parent.info.run_id))
    report_md = store.client().download_artifacts(parent.info.run_id, "comparison/report.md", str(tmp_path))
    assert "status FINISHED)" in Path(report_md).read_text()  # the parent's final status
    # the verdict where MLflow users look: the parent's description, metrics and params
    note = parent.data.tags[contract.NOTE]
    assert all(
        f"downsample={d},regularization={r}" in note
        for d in ("stride", "maxpool")
        for r in ("none", "dropout")
    )
    assert "baseline" in note and any(verdict in note for verdict in ("no evidence", "better", "worse"))
    assert "val_accuracy/downsample:maxpool regularization:dropout" in parent.data.metrics
    assert (
        parent.data.params["sweep.downsample"] == "stride,maxpool"
        and parent.data.params["sweep.seed"] == "0,1"
    )
    assert len({c.info.run_name for c in children}) == 8  # names carry the seed
    assert "viewStateShareKey=" in result.stdout  # where the UI shows the sweep grouped by variant


@pytest.mark.slow
def test_failing_job_is_recorded_and_the_sweep_goes_on(store, tmp_path):
    result = cli("-m", "optimizer.learning_rate=0.001,-1", "seed=0", *SHRUNK, *store.overrides, cwd=tmp_path)
    assert result.returncode != 0
    assert "1 of 2 sweep jobs failed" in result.stderr
    parent, children = parent_and_children(store)
    statuses = sorted((c.data.tags[contract.VARIANT], c.info.status) for c in children)
    assert statuses == [
        ("optimizer.learning_rate=-1", "FAILED"),
        ("optimizer.learning_rate=0.001", "FINISHED"),
    ]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "learning_rate" in failed.data.tags[contract.ERROR]
    assert parent.info.status == "FAILED"
    summary = store.client().download_artifacts(parent.info.run_id, "sweep_summary.md", str(tmp_path))
    assert "FAILED optimizer.learning_rate=-1" in Path(summary).read_text()
    assert all(r.info.status != "RUNNING" for r in store.runs())


@pytest.mark.slow
def test_parallel_joblib_sweep_loses_no_run(adam_sgd_sweep):
    import mlflow

    result, store = adam_sgd_sweep  # joblib, 2 workers (shared with test_adaptive.py)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr
    parent, children = parent_and_children(store)
    assert {c.info.status for c in children} == {"FINISHED"}
    jobs = sorted((c.data.tags[contract.VARIANT], c.data.tags[contract.SEED]) for c in children)
    assert len(jobs) == len(set(jobs))  # each job once
    first_round = [(f"optimizer={o}", s) for o in ("adam", "sgd") for s in ("0", "1")]
    assert set(first_round) <= set(jobs)
    found = mlflow.MlflowClient(store.uri).search_experiments(filter_string=f"name = '{store.experiment}'")
    assert len(found) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        (
            "augmentation",
            ["dataset=image_folder", "dataset.image_size=[16,16]", "augmentation=none,flip_shift"],
        ),
        (
            "transfer_learning",
            [
                "backbone=mobilenet_v2",
                "backbone.alpha=0.35",
                "backbone.weights=null",
                "backbone.input_size=[32,32]",
            ],
        ),
    ],
)
def test_image_folder_presets_sweep_with_and_without_flips(store, tmp_path, preset, extra):
    from conftest import write_image_folder

    root = write_image_folder(tmp_path / "images", per_class=6)
    result = cli(
        "-m", f"experiment={preset}", f"dataset.path={root}", *extra, "seed=0", "trainer.epochs=1",
        "tracking.log_model=false", *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = parent_and_children(store)
    assert sorted(c.data.tags[contract.VARIANT] for c in children) == [
        "augmentation=flip_shift",
        "augmentation=none",
    ]
    assert {c.info.status for c in children} == {"FINISHED"} and parent.info.status == "FINISHED"


def test_a_sweep_that_cannot_be_tracked_does_not_start(tmp_path):
    result = cli("-m", "seed=0,1", "tracking.uri=nosuchscheme://store", cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and "Launching" not in result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]  # one line, no traceback
    assert line.startswith("convlab: ") and "nosuchscheme" in line


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_a_basic_launcher_sweep_ends_job_and_parent_killed(store, tmp_path, sig):
    process = _start_sweep(
        tmp_path, "seed=0,1", "trainer.epochs=500", "tracking.log_model=false", *store.overrides
    )
    wait_for(lambda: any("loss" in r.data.metrics for r in store.runs()))  # the first job is training
    process.send_signal(sig)  # the job runs in the sweep's own process (the basic launcher)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert stderr.strip().splitlines()[-1].startswith("convlab: interrupted; sweep ")
    assert sorted(r.info.status for r in store.runs()) == ["KILLED", "KILLED"]  # the job and its parent


def _start_sweep(cwd, *args):
    command = [sys.executable, "-m", "pipeline", "-m", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=cwd, start_new_session=True, **pipes)  # its own group, as in a shell


def _by_role(store):
    runs = store.runs()
    parents = [r for r in runs if r.data.tags.get(contract.ROLE) == contract.ROLE_SWEEP]
    return parents, {p.info.run_id: [r for r in runs if r.data.tags.get(contract.PARENT) == p.info.run_id]
                     for p in parents}  # fmt: skip


@pytest.mark.slow
def test_two_sweeps_started_together_from_one_folder_never_mix(store, tmp_path):
    tiny = [*SHRUNK, "dataset.max_samples=100", *store.overrides]
    sweeps = [_start_sweep(tmp_path, "seed=0,1", f"optimizer={name}", *tiny) for name in ("adam", "sgd")]
    for process in sweeps:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    parents, children = _by_role(store)
    assert len(parents) == 2 and len({p.data.tags[contract.SWEEP_ID] for p in parents}) == 2
    for parent in parents:
        runs = children[parent.info.run_id]
        assert sorted(r.data.tags[contract.SEED] for r in runs) == ["0", "1"]
        assert len({r.data.tags[contract.group_tag("optimizer")] for r in runs}) == 1  # adam or sgd, not both
        assert {r.info.status for r in runs} == {
            contract.FINISHED
        } and parent.info.status == contract.FINISHED
    assert len(list((tmp_path / "multirun").glob("*/*"))) == 2  # a folder each


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "how"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "ctrl-c-to-the-group"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "sigterm-to-main"),
        (["hydra/launcher=submitit_local"], "sigterm-to-main"),  # each job its own process
    ],
    ids=["joblib-ctrl-c", "joblib-sigterm", "submitit-sigterm"],
)
def test_interrupting_a_parallel_sweep_ends_every_process_and_run(store, tmp_path, launcher, how):
    import psutil

    process = _start_sweep(
        tmp_path, *launcher, "seed=0,1", "trainer.epochs=500", "dataset.max_samples=200",
        "tracking.log_model=false", *store.overrides,
    )  # fmt: skip
    wait_for(lambda: sum("loss" in r.data.metrics for r in store.runs()) >= 2)  # both workers training
    workers = psutil.Process(process.pid).children(recursive=True)
    started = time.time()
    if how == "ctrl-c-to-the-group":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 60)
    assert time.time() - started < 60 and process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("convlab:")]
    assert len(lines) == 1 and lines[0].startswith("convlab: interrupted; sweep "), stderr[-3000:]
    parents, children = _by_role(store)
    assert parents[0].info.status == contract.KILLED
    statuses = [r.info.status for r in children[parents[0].info.run_id]]
    assert len(statuses) >= 2 and set(statuses) <= {contract.KILLED, contract.FINISHED}
    assert contract.KILLED in statuses and not [r for r in store.runs() if r.info.status == contract.RUNNING]


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_duplicates(store, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    args = ["seed=0,1,2", "optimizer=adam", *SHRUNK, "dataset.max_samples=150", *store.overrides,
            f"trainer.checkpoint.dir={checkpoints}"]  # fmt: skip
    process = _start_sweep(tmp_path, *args)

    def one_finished_one_running():
        statuses = [r.info.status for r in _by_role(store)[1].get(_parent_id(store), [])]
        return contract.FINISHED in statuses and contract.RUNNING in statuses

    wait_for(one_finished_one_running)
    os.killpg(process.pid, signal.SIGKILL)  # a lost node: nothing gets to clean up
    process.communicate(timeout=30)
    first = {r.info.run_id for r in store.runs() if r.info.status == contract.FINISHED}
    (killed,) = [
        r.info.run_id for r in _by_role(store)[1][_parent_id(store)] if r.info.status == contract.RUNNING
    ]
    continued = _continues(store.client(), killed, checkpoints)

    resumed = cli("-m", *args, "sweep.resume=last", cwd=tmp_path)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    parents, children = _by_role(store)
    runs = children[parents[0].info.run_id]
    assert len(parents) == 1 and parents[0].info.status == contract.FINISHED
    finished = [r for r in runs if r.info.status == contract.FINISHED]
    assert sorted(r.data.tags[contract.SEED] for r in finished) == ["0", "1", "2"]  # one each
    assert first <= {r.info.run_id for r in finished}  # what had finished did not run again
    left = [(r.info.run_id, r.info.status) for r in runs if r.info.status != contract.FINISHED]
    if continued:  # the killed job went on in its own run: the same run id, nothing left behind
        assert f"resuming run {killed}" in resumed.stdout + resumed.stderr
        assert killed in {r.info.run_id for r in finished} and left == [] and len(runs) == 3
    else:  # it had logged epochs and no checkpoint: the stale run stays KILLED, a new run trains the job
        assert left == [(killed, contract.KILLED)]
        assert "stale" in next(r for r in runs if r.info.status == contract.KILLED).data.tags[contract.ERROR]
    for run in finished:  # every epoch once, in the continued run too
        steps = sorted(
            m.step for m in store.client().get_metric_history(run.info.run_id, contract.VAL_ACCURACY)
        )
        assert steps == [1]  # trainer.epochs=1

    again = cli("-m", *args, "sweep.resume=last", cwd=tmp_path)
    assert again.returncode == 0 and len(store.runs()) == len(runs) + 1  # nothing trained
    assert (
        again.stdout.count("skipped, already finished") + again.stderr.count("skipped, already finished") == 3
    )


def _continues(client, run_id: str, checkpoints: Path) -> bool:
    """Whether ``sweep.resume`` continues the killed job's run ``run_id`` in that same run: from its
    checkpoint, or from the start when it logged no epoch (else a new run trains the job)."""
    logged = client.get_metric_history(run_id, contract.VAL_ACCURACY)
    return (checkpoints / run_id / "state.json").exists() or not logged


def _parent_id(store):
    parents = _by_role(store)[0]
    return parents[0].info.run_id if parents else None


def test_fail_fast_skips_the_jobs_after_a_failure(store, tmp_path):
    result = cli(
        "-m", "optimizer.learning_rate=-1,0.001,0.01", "seed=0", "sweep.fail_fast=true", *SHRUNK,
        *store.overrides, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("convlab: ")
    parents, children = _by_role(store)
    runs = children[parents[0].info.run_id]
    assert [r.info.status for r in runs] == [contract.FAILED] and parents[0].info.status == contract.FAILED
    assert (result.stdout + result.stderr).count("skipped, an earlier job failed") == 2


def test_resuming_a_sweep_that_does_not_exist_is_one_line(store, tmp_path):
    result = cli("-m", "seed=0,1", "sweep.resume=nosuchsweep", *store.overrides, cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("convlab: sweep.resume=nosuchsweep: no sweep")
