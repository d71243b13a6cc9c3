"""convlab's Hydra sweeper on Optuna 4+: ``hydra/sweeper=optuna`` (see ``pipeline.sweep.search``)."""
