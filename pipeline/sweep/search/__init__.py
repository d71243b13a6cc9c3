"""Studies (``hydra/sweeper=optuna``): the search space, the ask-and-tell loop (``study``), the confirm
stage over seeds, and the study's report on its parent."""
