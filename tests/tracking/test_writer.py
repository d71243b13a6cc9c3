"""A run's figures drawn in its writer thread: all in the store before the run ends, or the run fails."""

from __future__ import annotations

import pytest

from pipeline.tracking import contract, lifecycle, plots, record, writer


def _figure(title: str):
    fig = plots.figure(figsize=(2, 2))
    fig.subplots().set_title(title)
    return fig


def test_the_writer_makes_its_calls_in_order_and_raises_the_first_failure_once():
    made, pen = [], writer.Writer()
    for item in ("a", "b"):
        pen.submit(made.append, (item,))
    pen.submit(lambda: 1 / 0, ())
    pen.submit(made.append, ("after the failure",))  # not made: the run fails
    with pytest.raises(ZeroDivisionError):
        pen.finish()
    assert made == ["a", "b"]
    pen.finish()  # raised once
    pen.submit(made.append, ("c",))  # a new thread for the next calls
    pen.finish()
    assert made == ["a", "b", "c"]


def test_a_runs_figures_are_all_in_the_store_when_it_ends_finished(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with lifecycle.run_context(uri, "figures", "job", {}, system_metrics=False) as run:
        run.wait()
        for name in ("one", "two", "three"):
            record.log_figure(_figure(name), f"figures/{name}.png")
    client = mlflow.MlflowClient(uri)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    logged = {f.path: f.file_size for f in client.list_artifacts(run.run_id, "figures")}
    assert set(logged) == {"figures/one.png", "figures/two.png", "figures/three.png"}
    assert all(size > 1000 for size in logged.values())


def test_a_figure_that_cannot_be_written_fails_the_run(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    broken = _figure("broken")
    broken.savefig = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("cannot write figure"))
    context = lifecycle.run_context(uri, "figures", "job", {}, system_metrics=False)
    with pytest.raises(OSError), context as run:
        run.wait()
        record.log_figure(broken, "figures/broken.png")
    recorded = mlflow.MlflowClient(uri).get_run(run.run_id)
    assert recorded.info.status == "FAILED"
    assert "cannot write figure" in recorded.data.tags[contract.ERROR]
