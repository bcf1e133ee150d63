"""layers.upsample.upsample_add: the CPU kernel where the step is exactly nearest x2, torch's
interpolation elsewhere, the same values as ``fine + F.interpolate(coarse)`` either way."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
from jt_mm_plugins.models.layers import upsample as upsample_module
from jt_mm_plugins.models.layers.upsample import upsample_add
from jt_mm_plugins.utils.errors import InputError


@pytest.mark.parametrize('coarse_hw,fine_hw,kwargs,kernel', [
    ((4, 5), (8, 10), dict(), True),
    ((4, 5), (8, 10), dict(scale_factor=2), True),
    ((4, 5), (9, 11), dict(), False),  # odd sizes: interpolation to the fine size
    ((4, 5), (8, 10), dict(mode='bilinear'), False),
    ((4, 4), (12, 12), dict(scale_factor=3), False),
])
def test_matches_torch_and_uses_the_kernel_only_for_exact_nearest_x2(monkeypatch, coarse_hw,
                                                                      fine_hw, kwargs, kernel):
    calls = []
    real = upsample_module.upsample_x2_add
    monkeypatch.setattr(upsample_module, 'upsample_x2_add',
                        lambda *a: calls.append(1) or real(*a))
    rng = np.random.RandomState(0)
    coarse = rng.randn(2, 3, *coarse_hw).astype(np.float32)
    fine = rng.randn(2, 3, *fine_hw).astype(np.float32)
    got = upsample_add(jt.array(coarse), jt.array(fine), **kwargs).numpy()
    torch_kwargs = dict(kwargs)
    if 'scale_factor' not in torch_kwargs:
        torch_kwargs['size'] = fine_hw
    expected = torch.from_numpy(fine) + F.interpolate(torch.from_numpy(coarse), **torch_kwargs)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6, rtol=0)
    assert bool(calls) == kernel


def test_a_size_mismatch_names_the_sizes():
    with pytest.raises(InputError, match=r'\(4, 4\) upsampled with scale_factor=2 is \(8, 8\), but '
                                         r'the map it is added to is \(9, 9\)'):
        upsample_add(jt.zeros((1, 2, 4, 4)), jt.zeros((1, 2, 9, 9)), scale_factor=2)
