"""The team server: MLflow's tracking server on PostgreSQL (``serve``), the database it runs on
(``postgres``), MLflow's basic-auth config (``basic_auth``), and the unprivileged user it serves as
(``privileges``). ``python -m pipeline.server --help``.

A floor of its own: it serves the store to a team, which is another job than writing a run to it.
Never imports TensorFlow or Keras. May use: tracking, config.
"""
