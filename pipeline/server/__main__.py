"""``python -m pipeline.server [--setup] [--add-user NAME]``: the team's MLflow server (``serve.py``)."""

from pipeline.server.serve import main

if __name__ == "__main__":
    main()
