"""The plugin Hydra instantiates for ``hydra/sweeper=optuna``; the work is ``pipeline.sweep.search``.

It lives in the ``hydra_plugins`` namespace package because Hydra discovers plugins only
there. Replacing it with Hydra's own ``hydra-optuna-sweeper`` (once released for Optuna 4) is a
one-line change: that plugin registers the same ``hydra/sweeper=optuna`` with the same keys,
less convlab's ``pruner*`` and ``confirm`` (README: Search).
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        # Hydra imports this module on every run: pandas waits
        from pipeline.sweep.search.study import StudySweeper

        self.sweeper = StudySweeper(**options)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
