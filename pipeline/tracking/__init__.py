"""Tracking: the MLflow contract (names shared by writers and readers), the store check, one run's
lifecycle, everything written to MLflow, a sweep's runs in the store, the team server, UI links.

The one floor that writes to MLflow; never imports TensorFlow or Keras. May use: data, config.
"""
