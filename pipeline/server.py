"""``python -m pipeline.server [--setup]``: the team's MLflow server (``pipeline/tracking/server.py``)."""

from pipeline.tracking.server import main

if __name__ == "__main__":
    main()
