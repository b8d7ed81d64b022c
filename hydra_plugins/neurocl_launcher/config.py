"""The launchers' structured configs, registered in Hydra's ConfigStore (group hydra/launcher).

The submitit ones are hydra-submitit-launcher's own configs (every parameter and default) with our `_target_`.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

PACKAGE = "hydra_plugins.neurocl_launcher.launchers"


@dataclass
class NeuroclBasicLauncherConf:
    _target_: str = f"{PACKAGE}.BasicLauncher"


@dataclass
class NeuroclLocalQueueConf(LocalQueueConf):
    _target_: str = f"{PACKAGE}.LocalLauncher"


@dataclass
class NeuroclSlurmQueueConf(SlurmQueueConf):
    _target_: str = f"{PACKAGE}.SlurmLauncher"


# Names unlike the presets' (conf/hydra/launcher/local.yaml, slurm.yaml): a config file with the name of a
# ConfigStore entry would be matched against it as a schema, which Hydra 1.3 still does, with a deprecation warning.
ConfigStore.instance().store(group="hydra/launcher", name="neurocl_basic", node=NeuroclBasicLauncherConf,
                             provider="neurocl_launcher")
ConfigStore.instance().store(group="hydra/launcher", name="neurocl_submitit_local", node=NeuroclLocalQueueConf,
                             provider="neurocl_launcher")
ConfigStore.instance().store(group="hydra/launcher", name="neurocl_submitit_slurm", node=NeuroclSlurmQueueConf,
                             provider="neurocl_launcher")
