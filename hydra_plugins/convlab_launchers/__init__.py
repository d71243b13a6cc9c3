"""convlab's Hydra launchers: the submitit and Ray launchers, made to survive a real cluster.

Hydra only instantiates launchers that live in the ``hydra_plugins`` namespace, so these thin
subclasses live here; what they do is in ``pipeline.sweep.launch.slurm`` and
``pipeline.sweep.launch.ray_cluster``.
"""
