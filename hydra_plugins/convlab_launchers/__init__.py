"""convlab's Hydra launchers: the submitit and Ray launchers, made to survive a real cluster.

Hydra only instantiates launchers that live in the ``hydra_plugins`` namespace, so these thin
subclasses live here; what they do is in ``pipeline.sweep.slurm`` and ``pipeline.sweep.ray_cluster``.
"""
