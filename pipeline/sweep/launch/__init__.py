"""Where a sweep's jobs run: SLURM (``slurm``), a Ray cluster (``ray_cluster``), local processes
(``local_jobs``), and what every back-end shares about its worker processes (``workers``)."""
