"""neurocl's Hydra launchers: Hydra's basic launcher and hydra-submitit-launcher's local and SLURM launchers,
changed to wait for every job of a sweep and to report each failure (neurocl.sweep.report).

A Hydra plugin package: Hydra finds it by scanning the `hydra_plugins` namespace package (which has no
__init__.py: other distributions, hydra-submitit-launcher among them, install their plugins there too) and
imports `config` (the ConfigStore entries, group hydra/launcher) and `launchers` (the classes).

    hydra/launcher=neurocl_basic            Hydra's basic launcher (one job after the other, in this process)
    hydra/launcher=neurocl_submitit_local   hydra-submitit-launcher's submitit_local, waiting for every job
    hydra/launcher=neurocl_submitit_slurm   hydra-submitit-launcher's submitit_slurm, waiting for every job
    hydra/launcher=local | slurm            neurocl's presets (conf/hydra/launcher/), which extend the two above

neurocl.sweep.SweepCallback runs a sweep that names Hydra's or hydra-submitit-launcher's own launcher classes
(`basic`, `submitit_local`, `submitit_slurm`) with these instead; see neurocl/sweep.py.
"""
