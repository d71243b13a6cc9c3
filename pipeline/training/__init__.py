"""Training: one run, top to bottom: the config turned into plain values (``wiring``), then data, model, fit,
log (``train``) or predict, with its artifacts and figures, dispatched by ``runner.execute``.

May use: model, tracking, data, config.
"""
