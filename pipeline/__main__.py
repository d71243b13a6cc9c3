"""convlab's command line, a Hydra app: ``python -m pipeline [group=option ...] [-m]``.

``--help``, ``--cfg job`` and config errors answer before TensorFlow or MLflow are imported.
Returns the objective (final val_accuracy) so Hydra sweepers can optimise it.
"""

import sys

import hydra

from pipeline import config
from pipeline.errors import ConvlabError


@hydra.main(version_base="1.3", config_path=str(config.CONF_DIR), config_name="config")
def _hydra_main(cfg) -> float:
    from pipeline import app

    return app.task(cfg)


def main() -> None:
    config.register_experiments()
    try:
        config.check_choices([arg for arg in sys.argv[1:] if not arg.startswith("-")])
    except ConvlabError as err:
        sys.exit(f"convlab: {err}")
    from pipeline import sweep
    from pipeline.quiet import quiet_stderr

    with quiet_stderr():  # TensorFlow's C++ start-up noise dropped, real errors kept
        try:
            _hydra_main()
        except KeyboardInterrupt:
            sweep.abort_open_sweep("KILLED")
            sys.exit("convlab: interrupted")
        except BaseException:  # a crash or Hydra's own exit: the sweep's parent must not stay RUNNING
            sweep.abort_open_sweep("FAILED")
            raise
    if sweep.failures():
        sys.exit(sweep.failures())


if __name__ == "__main__":
    main()
