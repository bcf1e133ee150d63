"""What every test shares: a clean mmengine visualizer per test.

mmdet's ``default_runtime`` names its visualizer ``'visualizer'``, and mmengine returns an existing
``ManagerMixin`` instance of that name instead of building a new one: a second ``Runner`` in the same
process writes its config and scalars into the first runner's ``vis_data`` folder. One runner per
process (tools/train.py) never sees it; in the test process each test's runner would write into an
earlier test's ``tmp_path``, which pytest has deleted by then (``make test`` keeps only failed tests'
folders). Each test starts without visualizer instances, as a fresh process does.
"""
import pytest


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.fixture(autouse=True)
def fresh_visualizer_instances():
    yield
    from mmengine.visualization import Visualizer
    for cls in (Visualizer, *_subclasses(Visualizer)):
        cls._instance_dict.clear()
