"""``JittorFPN`` (bridged, built from mmdet's ``MODELS``) against mmdet's ``FPN``.

Both are built with the same arguments; mmdet's FPN gets random weights (and random BatchNorm
statistics), its state dict is loaded strictly into the bridged Jittor FPN, and the two are compared
on the same inputs: every output within 1e-4 (max abs, float32), and the gradients of a random linear
loss w.r.t. every input and every parameter within 1e-3 relative (max|a - b| / max|b|), in training
and evaluation mode. Training mode also compares the updated BatchNorm running statistics.

ReLUs ('*-relu' cases): a float32 gradient computed upstream of a ReLU whose input lies within
float32 error of zero depends on the machine's rounding, in mmdet as much as in Jittor. So float32
gradients are compared only where float32 decides them (every ReLU call after the parameter's
module, all of them for the input gradients, farther from zero in a float64 run than 10x the
float32 error bound: jt_mm_plugins/alignment/margins.py), and the bridged cases also compare every
output and gradient float64 Jittor vs float64 mmdet (1e-6 abs / 1e-5 relative) after asserting
that no float64 ReLU input lies within 1e-9 of its scale from zero.
"""
import copy
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jt_mm_plugins  # noqa: F401  (registers JittorFPN in mmdet's MODELS)
from jt_mm_plugins.alignment.compare import FLOAT64_TOLERANCES
from jt_mm_plugins.alignment.margins import measure_margins
from jt_mm_plugins.bridge import state_dict_to_jittor
from jt_mm_plugins.models.necks.fpn import JittorFPN, torch_like_interpolate
from jt_mm_plugins.runtime import jt

mmdet_necks = pytest.importorskip('mmdet.models.necks')
from mmdet.registry import MODELS  # noqa: E402

OUT_ATOL = 1e-4
GRAD_RTOL = 1e-3

IN_CHANNELS = [8, 12, 16, 16]
SIZES = [32, 16, 8, 4]
BN = dict(type='BN')
GN = dict(type='GN', num_groups=4)
# Not 2: the extra levels reach 1x1, and a training-mode BatchNorm over exactly two values per channel
# has a gradient proportional to eps / (var + eps), computed as 1 - x_hat^2 with x_hat^2 ~ 1 - 1e-5:
# float32 cancellation then leaves ~1e-3 relative noise in torch and Jittor alike (measured 3.7e-4
# torch32 vs float64 and 1.9e-3 Jittor vs float64 on fpn_convs.4 of 'start1-on_input'/BN/train).
BATCH = 3


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|b|, 1e-6)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights and biases, random BN running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
        for name, b in module.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.3)
            elif name.endswith('running_var'):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith('num_batches_tracked'):
                b.fill_(3)


def make_inputs(sizes=SIZES, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((BATCH, c, s, s)).astype(np.float32)
            for c, s in zip(IN_CHANNELS, sizes)]


def run_torch(module: torch.nn.Module, inputs, loss_weights=None, dtype=torch.float32):
    """Forward + backward of ``sum_i <out_i, w_i>``.

    Returns outputs, loss weights, input grads and param grads (by name), all numpy.
    """
    xs = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in inputs]
    outs = module(xs)
    if loss_weights is None:
        rng = np.random.default_rng(123)
        loss_weights = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
    loss = sum((o * torch.tensor(w, dtype=dtype)).sum() for o, w in zip(outs, loss_weights))
    loss.backward()
    param_grads = {k: p.grad.numpy().copy() for k, p in module.named_parameters()
                   if p.grad is not None}
    # Levels outside [start_level, end_level] get no gradient: zeros, as jt.grad reports them.
    input_grads = [np.zeros_like(x.detach().numpy()) if x.grad is None else x.grad.numpy()
                   for x in xs]
    return [o.detach().numpy() for o in outs], loss_weights, input_grads, param_grads


def assert_close(ref, got, label: str, margins=None, out_atol=OUT_ATOL,
                 grad_rtol=GRAD_RTOL) -> dict:
    """Compare (outputs, _, input grads, param grads) tuples; return the measured errors. With
    ``margins`` (the reference's MarginReport) only the gradients float32 decides; the others are
    counted under 'not decidable'."""
    outs_r, _, xg_r, pg_r = ref
    outs_g, _, xg_g, pg_g = got
    assert len(outs_r) == len(outs_g), label
    errors = {'not decidable': 0}
    for i, (a, b) in enumerate(zip(outs_g, outs_r)):
        assert a.shape == b.shape, (label, i, a.shape, b.shape)
        errors[f'out{i}'] = float(np.abs(a - b).max())
        assert errors[f'out{i}'] <= out_atol, (label, errors)
    for i, (a, b) in enumerate(zip(xg_g, xg_r)):
        if margins is not None and not margins.input_grad_well_defined():
            errors['not decidable'] += 1
            continue
        errors[f'grad:input{i}'] = rel_err(a, b)
        assert errors[f'grad:input{i}'] <= grad_rtol, (label, errors)
    assert set(pg_g) == set(pg_r), (label, sorted(set(pg_g) ^ set(pg_r)))
    for name in pg_r:
        if margins is not None and not margins.param_grad_well_defined(name):
            errors['not decidable'] += 1
            continue
        errors[f'grad:{name}'] = rel_err(pg_g[name], pg_r[name])
        assert errors[f'grad:{name}'] <= grad_rtol, (label, name, errors)
    return errors


def run_reference(torch_fpn, inputs):
    """The float32 reference run and a float64 copy's (taken first), with their ReLU decisions:
    (float32 result, float64 result, float64 module, MarginReport)."""
    torch64 = copy.deepcopy(torch_fpn).double()
    results = {}
    report = measure_margins(
        torch_fpn, torch64, lambda: results.__setitem__(32, run_torch(torch_fpn, inputs)),
        lambda: results.__setitem__(64, run_torch(torch64, inputs, dtype=torch.float64)))
    return results[32], results[64], torch64, report


def check_float64(jt_fpn64, ref64, inputs, report, label) -> None:
    """Every output and gradient of the float64 Jittor twin against the float64 reference."""
    assert not report.float64_violations(), (label, report.float64_violations()[:3])
    got64 = run_torch(jt_fpn64, inputs, ref64[1], dtype=torch.float64)
    assert_close(ref64, got64, f'{label}/float64', out_atol=FLOAT64_TOLERANCES['output_abs'],
                 grad_rtol=FLOAT64_TOLERANCES['grad_rel'])


def report_worst(label: str, errors: dict) -> None:
    """One line per case (shown with ``pytest -s``): the worst output and gradient errors."""
    out = max(v for k, v in errors.items() if k.startswith('out'))
    grad_key = max((k for k in errors if k.startswith('grad:')), key=errors.get, default=None)
    worst = f'{errors[grad_key]:.2e} ({grad_key})' if grad_key else '-'
    print(f'\n[fpn-align] {label}: max|out diff|={out:.2e} worst grad rel={worst}, float32 '
          f'gradients not decidable: {errors["not decidable"]}')


# ------------------------------------------------------------------------------------------------
# The pure-Jittor path: weights copied by name through numpy, gradients with jt.grad.
# ------------------------------------------------------------------------------------------------


def run_pure_jittor(module: JittorFPN, inputs, loss_weights, train: bool):
    for m in module.modules():  # only the flags: Jittor's eval() would stop parameter gradients
        m.is_train = train
    xs = [jt.array(x) for x in inputs]
    outs = module(xs)
    loss = sum((o * jt.array(w)).sum() for o, w in zip(outs, loss_weights))
    params = {k: v for k, v in module.named_parameters() if v.requires_grad}
    grads = jt.grad(loss, xs + list(params.values()))
    return ([o.numpy() for o in outs], loss_weights, [g.numpy() for g in grads[:len(xs)]],
            {k: g.numpy() for k, g in zip(params, grads[len(xs):])})


CASES = {
    'maxpool-extra': dict(num_outs=5),
    'extra-true': dict(num_outs=5, add_extra_convs=True),
    'on_input-relu': dict(num_outs=6, add_extra_convs='on_input', relu_before_extra_convs=True),
    'on_lateral': dict(num_outs=5, add_extra_convs='on_lateral'),
    'on_output-relu': dict(num_outs=6, add_extra_convs='on_output', relu_before_extra_convs=True),
    'start1-on_input': dict(num_outs=5, start_level=1, add_extra_convs='on_input'),
    'start1-end2': dict(num_outs=2, start_level=1, end_level=2),
    'end3-explicit-maxpool': dict(num_outs=5, end_level=3),
    'scale_factor': dict(num_outs=5, upsample_cfg=dict(mode='nearest', scale_factor=2)),
    'bilinear': dict(num_outs=4, upsample_cfg=dict(mode='bilinear', align_corners=False)),
    'act-relu': dict(num_outs=5, add_extra_convs='on_output', act_cfg=dict(type='ReLU')),
}
NORMS = {'nonorm': None, 'bn': BN, 'gn': GN}


def build_pair(kwargs: dict, norm_cfg, float64: bool = False):
    """(bridged JittorFPN, mmdet FPN) with the same random weights; with ``float64``, also a
    float64 copy of the bridged twin."""
    kwargs = dict(kwargs, in_channels=IN_CHANNELS, out_channels=8, norm_cfg=norm_cfg)
    torch_fpn = mmdet_necks.FPN(**kwargs)
    randomise_(torch_fpn)
    twins = []
    for _ in range(2 if float64 else 1):
        jt_fpn = MODELS.build(dict(type='JittorFPN', **kwargs))
        jt_fpn.load_state_dict(torch_fpn.state_dict(), strict=True)
        twins.append(jt_fpn)
    if float64:
        return twins[0], torch_fpn, twins[1].double()
    return twins[0], torch_fpn


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('norm', list(NORMS))
@pytest.mark.parametrize('case', list(CASES))
def test_bridged_fpn_matches_mmdet(case, norm, train):
    if norm == 'gn' and case not in ('on_input-relu', 'start1-end2', 'bilinear'):
        pytest.skip('GN is covered on a few structures; BN/none on all')
    jt_fpn, torch_fpn, jt_fpn64 = build_pair(CASES[case], NORMS[norm], float64=True)
    for m in (jt_fpn, torch_fpn, jt_fpn64):
        m.train(train)
    inputs = make_inputs()
    ref, ref64, _, report = run_reference(torch_fpn, inputs)
    got = run_torch(jt_fpn, inputs, ref[1])
    label = f'{case}/{norm}/{"train" if train else "eval"}'
    report_worst(label, assert_close(ref, got, label, margins=report))
    check_float64(jt_fpn64, ref64, inputs, report, label)
    # Running statistics written back to the torch buffers after a training forward.
    jt_buffers = dict(jt_fpn.named_buffers())
    for name, buf in torch_fpn.named_buffers():
        assert np.abs(jt_buffers[name].numpy() - buf.numpy()).max() <= OUT_ATOL, name


@pytest.mark.parametrize('upsample_cfg', [dict(mode='nearest'), dict(mode='nearest-exact'),
                                          dict(mode='bilinear', align_corners=True)],
                         ids=['nearest', 'nearest-exact', 'bilinear-corners'])
def test_bridged_fpn_odd_sizes_upsample_by_size(upsample_cfg):
    # 30 -> 15 is 2x, 15 -> 8 and 8 -> 5 are not: torch's non-integer nearest rule is exercised.
    jt_fpn, torch_fpn = build_pair(dict(num_outs=5, upsample_cfg=upsample_cfg), BN)
    inputs = make_inputs(sizes=[30, 15, 8, 5], seed=1)
    ref, _, _, report = run_reference(torch_fpn, inputs)
    # no ReLU, and max pools of kernel 1 (no choice): every float32 gradient is well-defined
    assert all(d.margin == float('inf') for d in report.trace64.decisions)
    report_worst(f'odd-sizes/{upsample_cfg}',
                 assert_close(ref, run_torch(jt_fpn, inputs, ref[1]), str(upsample_cfg)))


@pytest.mark.parametrize('case', ['on_output-relu', 'start1-end2'])
def test_pure_jittor_fpn_matches_mmdet(case):
    """The Jittor module without the bridge: weights copied through numpy by name."""
    kwargs = dict(CASES[case], in_channels=IN_CHANNELS, out_channels=8, norm_cfg=BN)
    torch_fpn = mmdet_necks.FPN(**kwargs)
    randomise_(torch_fpn)
    jt_fpn = JittorFPN(**kwargs)
    state_dict_to_jittor(jt_fpn, torch_fpn.state_dict(), strict=True)
    inputs = make_inputs(seed=2)
    for train in (True, False):
        torch_fpn.train(train)
        ref, _, _, report = run_reference(torch_fpn, inputs)
        torch_fpn.zero_grad()
        label = f'pure-jittor/{case}/bn/{"train" if train else "eval"}'
        report_worst(label, assert_close(ref, run_pure_jittor(jt_fpn, inputs, ref[1], train), label,
                                         margins=report))


def test_state_dict_keys_equal_mmdet():
    kwargs = dict(in_channels=IN_CHANNELS, out_channels=8, num_outs=6, add_extra_convs='on_input',
                  norm_cfg=BN)
    torch_keys = set(mmdet_necks.FPN(**kwargs).state_dict())
    jt_keys = set(MODELS.build(dict(type='JittorFPN', **kwargs)).state_dict())
    assert jt_keys == torch_keys
    assert 'lateral_convs.0.conv.weight' in jt_keys and 'fpn_convs.5.bn.running_var' in jt_keys


def test_init_cfg_is_accepted_and_default_init_is_xavier():
    jt.set_global_seed(0)
    fpn = MODELS.build(dict(type='JittorFPN', in_channels=[16, 32], out_channels=32, num_outs=3,
                            add_extra_convs='on_input',
                            init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform')))
    module = fpn.jittor_module
    for conv_module in list(module.lateral_convs) + list(module.fpn_convs):
        w = conv_module.conv.weight.numpy()
        out_c, in_c, kh, kw = w.shape
        bound = np.sqrt(6.0 / ((in_c + out_c) * kh * kw))
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.9 * bound  # uniform over the whole range, not a smaller one
        assert np.all(conv_module.conv.bias.numpy() == 0)


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=8), 'in_channels'),
    (dict(num_outs=3), 'num_outs'),
    (dict(end_level=2, num_outs=4), 'num_outs'),
    (dict(end_level=4, num_outs=5), 'end_level'),
    (dict(end_level=-2, num_outs=5), 'end_level'),
    (dict(start_level=4, num_outs=5), 'start_level'),
    (dict(add_extra_convs='on_top'), 'add_extra_convs'),
    (dict(add_extra_convs=1), 'add_extra_convs'),
    (dict(upsample_cfg=dict(mode='bicubic')), 'bicubic'),
    (dict(upsample_cfg=dict(mode='nearest', align_corners=False)), 'align_corners'),
    (dict(upsample_cfg=dict(mode='nearest', size=(8, 8))), 'size'),
    (dict(upsample_cfg=dict(mode='nearest', scale_factor=0)), 'scale_factor'),
])
def test_invalid_arguments_raise_value_error(kwargs, match):
    args = dict(in_channels=IN_CHANNELS, out_channels=8, num_outs=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        JittorFPN(**args)


def test_wrong_inputs_raise_value_error():
    fpn = JittorFPN(IN_CHANNELS, 8, 4, upsample_cfg=dict(scale_factor=2))
    with pytest.raises(ValueError, match='expected 4 input levels'):
        fpn([jt.zeros((1, c, 8, 8)) for c in IN_CHANNELS[:3]])
    odd = [jt.zeros((1, c, s, s)) for c, s in zip(IN_CHANNELS, [30, 15, 8, 4])]
    with pytest.raises(ValueError, match='upsampled'):
        fpn(odd)


@pytest.mark.parametrize('in_hw, kwargs', [
    ((7, 5), dict(size=(15, 11), mode='nearest')),
    ((15, 8), dict(size=(8, 5), mode='nearest')),
    ((6, 6), dict(scale_factor=1.5, mode='nearest')),
    ((5, 4), dict(scale_factor=(3, 0.5), mode='nearest')),
    ((4, 4), dict(scale_factor=1.2, mode='nearest')),
    ((7, 5), dict(size=(15, 11), mode='nearest-exact')),
    ((6, 6), dict(scale_factor=1.5, mode='nearest-exact')),
    ((7, 5), dict(size=(15, 4), mode='bilinear')),
    ((7, 5), dict(size=(15, 11), mode='bilinear', align_corners=True)),
    ((6, 6), dict(scale_factor=2.5, mode='bilinear', align_corners=False)),
    ((6, 1), dict(size=(12, 1), mode='bilinear', align_corners=True)),
])
def test_torch_like_interpolate_matches_torch(in_hw, kwargs):
    x = np.random.default_rng(6).standard_normal((2, 3) + in_hw).astype(np.float32)
    x_t = torch.tensor(x, requires_grad=True)
    ref = F.interpolate(x_t, **kwargs)
    g = np.random.default_rng(7).standard_normal(ref.shape).astype(np.float32)
    (ref * torch.tensor(g)).sum().backward()
    x_j = jt.array(x)
    out = torch_like_interpolate(x_j, **kwargs)
    grad = jt.grad((out * jt.array(g)).sum(), x_j)
    assert tuple(out.shape) == tuple(ref.shape)
    assert np.abs(out.numpy() - ref.detach().numpy()).max() <= 1e-5
    assert rel_err(grad.numpy(), x_t.grad.numpy()) <= 1e-5
