#!/bin/sh
# temporary: the staging modules on the pre-floors layout, in pipeline/_study/
cd /work/wt-search
touch pipeline/_study/__init__.py
for f in space studies pruning search confirm study_report; do
  sed -e 's/^from pipeline.config import compose$/from pipeline import config as compose/' \
      -e 's/^from pipeline.config.errors import ConfigError$/from pipeline.errors import ConfigError/' \
      -e 's/^from pipeline.config.schemas import GROUPS$/from pipeline.schemas import GROUPS/' \
      -e 's/^from pipeline.tracking import contract, store$/from pipeline import contract, store/' \
      -e 's/^from pipeline.tracking import contract, runs, store, studies$/from pipeline import contract, store\nfrom pipeline import sweep_runs as runs\nfrom pipeline._study import studies/' \
      -e 's/^from pipeline.tracking import contract, runs, studies$/from pipeline import contract\nfrom pipeline import sweep_runs as runs\nfrom pipeline._study import studies/' \
      -e 's/^from pipeline.tracking import contract, runs$/from pipeline import contract\nfrom pipeline import sweep_runs as runs/' \
      -e 's/^from pipeline.tracking import contract, studies$/from pipeline import contract\nfrom pipeline._study import studies/' \
      -e 's/^from pipeline.tracking import log as tracking$/from pipeline import tracking/' \
      -e 's/^from pipeline.compare import load$/from pipeline import compare as load/' \
      -e 's/^from pipeline.config import overrides$/from pipeline import overrides/' \
      -e 's/^from pipeline.sweep import adaptive$/from pipeline import adaptive/' \
      -e 's/^from pipeline.sweep import confirm, study_report$/from pipeline._study import confirm, study_report/' \
      -e 's/^from pipeline.sweep import space as search_space$/from pipeline._study import space as search_space/' \
      -e 's/^from pipeline.sweep.confirm import Verdict$/from pipeline._study.confirm import Verdict/' \
      staging/$f.py > pipeline/_study/$f.py
done
sed -e 's/^from pipeline.tracking import contract$/from pipeline import contract/' -e 's/    from pipeline.compare import load$/    from pipeline import compare as load/' -e 's/        from pipeline.tracking import studies$/        from pipeline._study import studies/' -e 's/    from pipeline.tracking import studies$/    from pipeline._study import studies/' -e 's/^    from pipeline.sweep import space$/    from pipeline._study import space/' staging/tests/test_search.py > tests/test_search.py
