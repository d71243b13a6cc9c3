"""``python -m pipeline.compare --experiment NAME``: the side-by-side report of a sweep."""

from pipeline.compare.load import main

raise SystemExit(main())
