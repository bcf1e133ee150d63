"""Test helpers of the Gold-YOLO tests around their PyTorch reference, ``yolov6detect==0.4.1``
(imported by :mod:`jt_mm_plugins.alignment.yolov6_reference` without its hub ``__init__``;
installed by scripts/setup.sh from requirements-test.txt). A missing package fails the test (it is
part of the set-up), naming the command that installs it.
"""
import types

import pytest

from jt_mm_plugins.alignment.yolov6_reference import (randomise_calibrated_,  # noqa: F401
                                                      unchain_sppf_pools_, yolov6_module,
                                                      yolov6_trained_bn_)


def yolov6(submodule: str) -> types.ModuleType:
    """``yolov6.<submodule>``; the test fails naming the install command when it is missing."""
    try:
        return yolov6_module(submodule)
    except ImportError as error:
        pytest.fail(str(error))
