"""``randomness=dict(seed=...)`` seeds Jittor too.

mmengine's ``set_random_seed`` seeds Python's ``random``, numpy and torch; Jittor's own generator
(``jt.init.*``, ``jt.rand``: the initialisation of the Jittor parts) is seeded by Jittor from the
clock at import. So two runs of one config with the same seed started Jittor parts from different
weights. Importing :mod:`jt_mm_plugins` wraps ``set_random_seed`` where mmengine's runner calls it
so that it also seeds Jittor with the same seed.
"""
import functools

import mmengine.runner as runner_package
import mmengine.runner.runner as runner_module
import mmengine.runner.utils as runner_utils

from jt_mm_plugins.runtime import jt


def _seeding_jittor_too(set_random_seed):

    @functools.wraps(set_random_seed)
    def wrapper(*args, **kwargs):
        seed = set_random_seed(*args, **kwargs)
        jt.set_seed(seed)
        return seed

    wrapper.seeds_jittor = True
    return wrapper


def seed_jittor_with_mmengine() -> None:
    """Wrap mmengine's ``set_random_seed`` (where the runner and users reach it) once."""
    for module in (runner_utils, runner_module, runner_package):
        if not getattr(module.set_random_seed, 'seeds_jittor', False):
            module.set_random_seed = _seeding_jittor_too(module.set_random_seed)


seed_jittor_with_mmengine()
