"""``hydra/launcher=ray_cluster``: hydra-ray-launcher's launcher, on an existing Ray cluster, interruptible.

The plugin's own launcher waits on each job in turn and, on Ctrl-C, leaves the cluster's workers
training. This one (``pipeline.sweep.launch.ray_cluster``) gives every job the sweep's folder as an absolute
path (a Ray worker's working directory is not the command's), and on Ctrl-C or SIGTERM cancels
every job: a running one gets KeyboardInterrupt and ends its run KILLED, a queued one never starts.
Only defined when hydra-ray-launcher is installed (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as _PluginRayLauncher
except ImportError:  # hydra/launcher=ray_cluster then says the class cannot be found
    _PluginRayLauncher = None

if _PluginRayLauncher is not None:

    class RayLauncher(_PluginRayLauncher):
        def launch(self, job_overrides, initial_job_idx: int):
            # Hydra imports every plugin module at start-up: the sweep floor loads only here
            from pipeline.sweep.launch import ray_cluster

            return ray_cluster.launch(self, job_overrides, initial_job_idx)
