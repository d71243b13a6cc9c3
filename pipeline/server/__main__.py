"""``python -m pipeline.server [--setup]``: the team's MLflow server (``pipeline/server/serve.py``)."""

from pipeline.server.serve import main

if __name__ == "__main__":
    main()
