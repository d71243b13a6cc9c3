"""Tracking: the MLflow contract (names shared by writers and readers), the store check, one run's
lifecycle, everything written to MLflow, a sweep's runs in the store and found again by id, where
a study lives (Optuna's storage beside the store) and a trial's handle, UI links. The team server
is a floor of its own (``pipeline.server``).

The one floor that writes to MLflow; never imports TensorFlow or Keras. May use: data, config.
"""
