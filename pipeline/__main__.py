"""convlab's command line, a Hydra app: ``python -m pipeline [group=option ...] [-m]``.

``--help``, ``--cfg job`` and config errors answer before TensorFlow or MLflow are imported.
Returns the objective (final val_accuracy) so Hydra sweepers can optimise it.
"""

import os
import sys

import hydra

from pipeline.config import composition, help
from pipeline.config.errors import ConvlabError
from pipeline.quiet import quiet_stderr
from pipeline.sweep import adaptive
from pipeline.tracking import contract, redaction, signals


@hydra.main(version_base="1.3", config_path=str(composition.CONF_DIR), config_name="config")
def _hydra_main(cfg) -> float:
    from pipeline import app  # the run floor (numpy, the data sources): not loaded for --help or --cfg

    return app.task(cfg)


def main() -> None:
    composition.register_experiments()
    help.register()  # ${convlab_help:}: --help's list of every option
    try:
        # overrides are key=value (or ~key); other words are flags' values (--cfg job, -p PKG)
        lines = [arg for arg in sys.argv[1:] if not arg.startswith("-") and ("=" in arg or arg[0] == "~")]
        composition.check_overrides(lines)
    except ConvlabError as err:
        sys.exit(redaction.redact(f"convlab: {err}"))
    signals.sigterm_as_interrupt()  # a scheduler's SIGTERM is a Ctrl-C
    redaction.redact_logs()  # Hydra's "#0 : tracking.uri=..." lines included
    try:
        with quiet_stderr():  # TensorFlow's C++ start-up noise dropped, real errors kept
            passes = _run()  # a sweep's outcome arrives as SystemExit from its callback
            while passes:  # sweep.max_seeds: more seeds, as resumes of the sweep
                for lines in passes:
                    next_round = _run(["-m", *lines])
                passes = next_round  # the round's last pass saw every run: its plan holds
    except KeyboardInterrupt:
        sweep_id = os.environ.get(contract.ENV_SWEEP_ID)
        if sweep_id:  # the sweep's guard ends its runs KILLED as this process exits
            resume = f"continue it: sweep.resume={sweep_id}"
            _leave(f"convlab: interrupted; sweep {sweep_id} ends KILLED ({resume})")
        _leave("convlab: interrupted")
    except SystemExit as done:  # a sweep's outcome, a run's one-line error
        _leave(done.code)
    finally:
        for key in contract.SWEEP_ENV:
            os.environ.pop(key, None)
    if "tensorflow" in sys.modules:
        _leave(0)


def _leave(code: int | str | None) -> None:
    """``sys.exit(code)``; once TensorFlow is loaded, without the interpreter's teardown.

    Tearing down TensorFlow's, Keras' and MLflow's modules costs 2 to 3 s of nothing on a laptop
    CPU, per run; after a Ctrl-C, with TensorFlow's own threads cut off mid-step, it can hang.
    Everything is written and the run ended by now: the atexit handlers still run (a sweep's
    guard ends its runs there), and the streams are flushed.
    """
    if isinstance(code, str):  # a one-line error may quote the store's URI
        code = redaction.redact(code)
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    import atexit

    if code is None:
        code = 0
    elif not isinstance(code, int):  # what sys.exit does with a message: print it, exit 1
        print(code, file=sys.stderr)
        code = 1
    # private: no public call runs the atexit handlers without the teardown this skips (sys.exit
    # joins threads and tears down modules first); CPython 3.10-3.13 (tests/test_private_apis.py)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: list[str] | None = None) -> list[list[str]]:
    """Runs the Hydra app (again, with ``args``, in this process: TensorFlow and MLflow stay
    loaded); returns the next round's passes when a sweep's callback asks for one (``NextRound``)."""
    if args is not None:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        sys.argv = [sys.argv[0], *args]
    try:
        _hydra_main()
    except adaptive.NextRound as more:
        return more.passes
    return []


if __name__ == "__main__":
    main()
