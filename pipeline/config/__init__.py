"""Config: the typed schemas (each group's options, the run), Hydra composition and what ``conf/``
offers, override parsing, up-front data checks and errors.

The bottom floor: imports no other convlab floor, and neither TensorFlow, Keras nor MLflow, so a
wrong value is refused in one line before anything heavy loads.
"""
