"""CLIPResNet (Jittor) against open_clip's ModifiedResNet (PyTorch), and the CLIP weight loader.

Tolerances (float32, b the PyTorch value):

* stage outputs, eval mode: max|a - b| < 1e-4 (measured ~7e-7);
* stage outputs, train mode: max|a - b| < 1e-4 * max(1, max|b|) (measured 1.3e-4 abs on outputs
  of magnitude 4.8, i.e. 2.6e-5 scaled). Batch statistics make train mode ill-conditioned:
  PyTorch float32 itself differs from a float64 run of the same model by 9.4e-5 at C5 here, and
  Jittor's own distance to that float64 run is the same (9.1e-5);
* gradients: relative(a, b) = max|a - b| / max(max|b|, 1e-6) < 1e-3, in float32 only where
  float32 decides them: every ReLU decision after the parameter's module (all of them, for the
  input gradient) lies farther from zero, in a float64 run of the reference, than 10x the float32
  error bound there (jt_mm_plugins/alignment/margins.py). The others move by ~1e-2 with the
  machine's rounding, in open_clip as much as in Jittor: they are counted, and the bridged test
  compares every gradient float64 Jittor vs float64 torch (1e-5 relative, outputs 1e-6) after
  asserting that no float64 ReLU input lies within 1e-9 of its scale from zero.
"""
import copy
import logging

import numpy as np
import pytest
import torch

from jt_mm_plugins.runtime import jt  # noqa: I001  (configures Jittor before anything imports it)
from jt_mm_plugins.alignment.compare import FLOAT64_TOLERANCES
from jt_mm_plugins.alignment.margins import margin_report, record_decisions
from jt_mm_plugins.models.backbones import clip_checkpoint
from jt_mm_plugins.models.backbones.clip_checkpoint import (filter_for_backbone,
                                                            load_clip_visual_state_dict)
from jt_mm_plugins.models.backbones.clip_resnet import CLIPResNet
from jt_mm_plugins.models.layers.batch_norm import BatchNorm2d

open_clip_resnet = pytest.importorskip('open_clip.modified_resnet')

LAYERS = [2, 1, 2, 1]  # two-block stages cover the stride-1, same-channel block (no downsample)
WIDTH = 16
IMAGE_SHAPE = (2, 3, 72, 56)  # odd sizes deeper down (9x7 at C3) exercise floor pooling
OUT_ATOL = 1e-4
GRAD_RTOL = 1e-3


def output_error(a: np.ndarray, b: np.ndarray, mode: str) -> float:
    """Max abs difference; in train mode scaled by the output magnitude when that exceeds 1."""
    err = float(np.abs(a - b).max())
    return err / max(1.0, float(np.abs(b).max())) if mode == 'train' else err


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def make_torch_reference(seed: int = 0, layers=LAYERS) -> torch.nn.Module:
    """open_clip ModifiedResNet with random weights and randomised BatchNorm statistics/affines."""
    torch.manual_seed(seed)
    model = open_clip_resnet.ModifiedResNet(layers=layers, output_dim=32, heads=2, image_size=64,
                                            width=WIDTH)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                # open_clip zeroes every bn3.weight; random ones keep the residual branches alive.
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
                m.num_batches_tracked.fill_(7)
    return model


def trunk_state_dict(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.startswith('attnpool.')}


def torch_stage_outputs(model: torch.nn.Module, x: torch.Tensor, num_stages: int = 4) -> list:
    x = model.stem(x)
    outs = []
    for i in range(num_stages):
        x = getattr(model, f'layer{i + 1}')(x)
        outs.append(x)
    return outs


def make_input(seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*IMAGE_SHAPE).astype(np.float32)


def output_weights(shapes, seed: int = 1) -> list:
    rng = np.random.RandomState(seed)
    return [rng.randn(*s).astype(np.float32) for s in shapes]


def traced_reference_run(ref, x_np):
    """Forward and backward of the float32 reference (stage outputs weighted by
    ``output_weights``) and of a float64 copy of it taken first, both with their ReLU decisions
    recorded: (outputs, input, float64 outputs, float64 input, MarginReport)."""
    ref64 = copy.deepcopy(ref).double()
    results = []
    traces = []
    for model, dtype in ((ref, torch.float32), (ref64, torch.float64)):
        x = torch.from_numpy(x_np).to(dtype).requires_grad_(True)
        with record_decisions(model) as trace:
            outs = torch_stage_outputs(model, x)
        weights = output_weights([tuple(o.shape) for o in outs])
        sum((o * torch.from_numpy(w).to(dtype)).sum() for o, w in zip(outs, weights)).backward()
        results += [outs, x]
        traces.append(trace)
    return results + [ref64, margin_report(traces[1], traces[0])]


# --------------------------------------------------------------------------------------------------
# Pure Jittor module, weights copied through numpy
# --------------------------------------------------------------------------------------------------
def copy_into_jittor(module: CLIPResNet, state_dict: dict) -> None:
    own = module.state_dict()
    assert set(own) == set(state_dict), (sorted(set(own) ^ set(state_dict)))
    for name, var in own.items():
        value = state_dict[name].numpy()
        assert value.size == int(np.prod(var.shape)), name
        var.assign(jt.array(value.reshape(var.shape).astype(str(var.dtype))))


def jittor_state(module) -> dict:
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


def test_state_dict_keys_equal_open_clip_trunk():
    ref = make_torch_reference()
    model = CLIPResNet(layers=LAYERS, width=WIDTH)
    assert set(model.state_dict()) == set(trunk_state_dict(ref))
    for k, v in model.state_dict().items():
        assert tuple(v.shape) == tuple(ref.state_dict()[k].shape) or k.endswith(
            'num_batches_tracked'), k
    assert 'layer1.0.downsample.0.weight' in model.state_dict()
    assert 'layer1.1.downsample.0.weight' not in model.state_dict()


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_pure_jittor_matches_open_clip(mode):
    ref = make_torch_reference()
    model = CLIPResNet(layers=LAYERS, width=WIDTH)
    copy_into_jittor(model, trunk_state_dict(ref))
    getattr(ref, mode)()
    getattr(model, mode)()

    x_np = make_input()
    ref_outs, x_t, _, _, _, report = traced_reference_run(ref, x_np)
    weights = output_weights([tuple(o.shape) for o in ref_outs])

    x_j = jt.array(x_np)
    outs = model(x_j)
    assert len(outs) == 4
    for o_j, o_t in zip(outs, ref_outs):
        assert tuple(o_j.shape) == tuple(o_t.shape)
        err = output_error(o_j.numpy(), o_t.detach().numpy(), mode)
        assert err < OUT_ATOL, f'{mode}: output error {err}'

    if mode == 'train':
        # Running statistics follow torch's update (unbiased variance, momentum 0.1).
        ref_state = ref.state_dict()
        for k, v in jittor_state(model).items():
            if k.endswith(('running_mean', 'running_var')):
                np.testing.assert_allclose(v, ref_state[k].numpy(), atol=1e-5, rtol=1e-5,
                                           err_msg=k)
        # Jittor's Module.eval() stops parameter gradients: compare gradients in train mode.
        names, params = zip(*[(k, v) for k, v in model.state_dict().items()
                              if not k.endswith(('running_mean', 'running_var',
                                                 'num_batches_tracked'))])
        loss_j = sum((o * jt.array(w)).sum() for o, w in zip(outs, weights))
        grads = jt.grad(loss_j, [x_j, *params])
        if report.input_grad_well_defined():
            assert relative_error(grads[0].numpy(), x_t.grad.numpy()) < GRAD_RTOL
        ref_params = dict(ref.named_parameters())
        decided = [n for n in names if report.param_grad_well_defined(n)]
        for name, g in zip(names, grads[1:]):
            if name in decided:  # the others: float64 in test_bridged_matches_open_clip
                err = relative_error(g.numpy(), ref_params[name].grad.numpy())
                assert err < GRAD_RTOL, f'grad of {name}: relative error {err}'
        print(f'\n[clip-align] float32 gradients compared: {len(decided)} of {len(names)}; '
              f'{report.summary()}')


def test_out_indices_builds_only_needed_stages():
    model = CLIPResNet(layers=LAYERS, width=WIDTH, out_indices=(0, 1, 2))
    assert not hasattr(model, 'layer4')
    assert not any(k.startswith('layer4.') for k in model.state_dict())
    outs = model(jt.array(make_input()))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 18, 14), (128, 9, 7), (256, 4, 3)]

    only_c4 = CLIPResNet(layers=LAYERS, width=WIDTH, out_indices=(2, ))
    assert len(only_c4(jt.array(make_input()))) == 1
    assert not hasattr(only_c4, 'layer4') and hasattr(only_c4, 'layer3')


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(4, )), 'out_indices'),
    (dict(out_indices=(-1, 0)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(out_indices=(1, 1)), 'out_indices'),
    (dict(layers=[1, 1, 1]), 'layers'),
    (dict(layers=[1, 0, 1, 1]), 'layers'),
    (dict(width=15), 'width'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(out_indices=(0, 1), frozen_stages=3), 'frozen_stages'),
    (dict(frozen_stages=-2), 'frozen_stages'),
])
def test_bad_arguments_raise(kwargs, match):
    cfg = dict(layers=LAYERS, width=WIDTH)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CLIPResNet(**cfg)


def test_bad_input_shape_raises():
    model = CLIPResNet(layers=[1, 1, 1, 1], width=WIDTH, out_indices=(0, ))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(jt.zeros((1, 4, 32, 32)))


def _bn_stats(module) -> dict:
    return {k: v for k, v in jittor_state(module).items()
            if k.endswith(('running_mean', 'running_var'))}


def test_frozen_stages_pure_jittor():
    model = CLIPResNet(layers=LAYERS, width=WIDTH, frozen_stages=1)
    model.train()
    for name, var in model.state_dict().items():
        if name.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            continue
        frozen = name.split('.')[0] in ('conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'layer1')
        assert var.requires_grad is (not frozen), name
    frozen_bns = [model.bn1, model.bn2, model.bn3] + [
        m for m in model.layer1.modules() if isinstance(m, BatchNorm2d)]
    assert all(not m.is_training() for m in frozen_bns)
    assert model.layer2[0].bn1.is_training()

    before = _bn_stats(model)
    jt.sync(list(model(jt.array(make_input()))))
    after = _bn_stats(model)
    for k in before:
        changed = not np.array_equal(before[k], after[k])
        assert changed is k.startswith(('layer2', 'layer3', 'layer4')), k


def test_frozen_bns_stay_in_eval_under_a_jittor_parent():
    """A Jittor parent's train() sets every flag directly, bypassing CLIPResNet.train()."""

    class Parent(jt.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = CLIPResNet(layers=[1, 1, 1, 1], width=WIDTH, out_indices=(0, 1),
                                       frozen_stages=0)

        def execute(self, x):
            return self.backbone(x)

    parent = Parent()
    parent.eval()
    parent.train()
    before = _bn_stats(parent.backbone)
    jt.sync(list(parent(jt.array(make_input()))))
    after = _bn_stats(parent.backbone)
    for k in ('bn1.running_mean', 'bn2.running_var', 'bn3.running_mean'):
        np.testing.assert_array_equal(before[k], after[k])
    assert not np.array_equal(before['layer1.0.bn1.running_mean'],
                              after['layer1.0.bn1.running_mean'])


def test_norm_eval_pure_jittor():
    ref = make_torch_reference()
    model = CLIPResNet(layers=LAYERS, width=WIDTH, norm_eval=True)
    copy_into_jittor(model, trunk_state_dict(ref))
    model.train()
    assert model.is_training()
    assert all(not m.is_training() for m in model.modules() if isinstance(m, BatchNorm2d))
    before = _bn_stats(model)
    x = jt.array(make_input())
    outs = model(x)
    ref.eval()
    ref_outs = torch_stage_outputs(ref, torch.from_numpy(make_input()))
    for o_j, o_t in zip(outs, ref_outs):
        assert np.abs(o_j.numpy() - o_t.detach().numpy()).max() < OUT_ATOL
    for k, v in _bn_stats(model).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # The affine parameters still learn.
    assert model.bn1.weight.requires_grad
    g = jt.grad(sum(o.sum() for o in outs), model.layer2[0].bn3.weight)
    assert np.abs(g.numpy()).max() > 0


# --------------------------------------------------------------------------------------------------
# Bridged wrapper from mmdet's MODELS
# --------------------------------------------------------------------------------------------------
def build_bridged(**kwargs):
    from mmdet.registry import MODELS
    cfg = dict(type='CLIPResNet', layers=LAYERS, width=WIDTH)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def load_reference_into(wrapper, ref) -> None:
    sd = filter_for_backbone(ref.state_dict(), wrapper.state_dict().keys(), logger='silent')
    wrapper.load_state_dict(sd, strict=True)


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_bridged_matches_open_clip(mode):
    ref = make_torch_reference()
    wrapper = build_bridged()
    assert set(wrapper.state_dict()) == set(trunk_state_dict(ref))
    load_reference_into(wrapper, ref)
    getattr(ref, mode)()
    getattr(wrapper, mode)()

    wrapper64 = build_bridged()
    load_reference_into(wrapper64, ref)
    wrapper64.double()
    getattr(wrapper64, mode)()

    x_np = make_input()
    ref_outs, x_ref, ref64_outs, x_ref64, ref64, report = traced_reference_run(ref, x_np)
    x_jt = torch.from_numpy(x_np).requires_grad_(True)
    outs = wrapper(x_jt)
    assert isinstance(outs, tuple) and len(outs) == 4
    for o, o_ref in zip(outs, ref_outs):
        assert o.shape == o_ref.shape
        err = output_error(o.detach().numpy(), o_ref.detach().numpy(), mode)
        assert err < OUT_ATOL, f'{mode}: output error {err}'

    weights = [torch.from_numpy(w) for w in output_weights([tuple(o.shape) for o in ref_outs])]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    # float32: the gradients float32 decides (module docstring)
    if report.input_grad_well_defined():
        assert relative_error(x_jt.grad.numpy(), x_ref.grad.numpy()) < GRAD_RTOL
    ref_params = dict(ref.named_parameters())
    compared, total = 0, len(list(wrapper.named_parameters()))
    for name, p in wrapper.named_parameters():
        assert p.grad is not None, name
        if report.param_grad_well_defined(name):
            err = relative_error(p.grad.numpy(), ref_params[name].grad.numpy())
            assert err < GRAD_RTOL, f'{mode}: grad of {name}: relative error {err}'
            compared += 1
    print(f'\n[clip-align] {mode}: float32 gradients compared {compared} of {total}; '
          f'{report.summary()}')

    # float64: every output and gradient
    assert not report.float64_violations(), report.float64_violations()[:3]
    x_jt64 = torch.from_numpy(x_np).double().requires_grad_(True)
    outs64 = wrapper64(x_jt64)
    for o, o_ref in zip(outs64, ref64_outs):
        assert o.dtype == torch.float64
        err = float((o.detach() - o_ref.detach()).abs().max())
        assert err <= FLOAT64_TOLERANCES['output_abs'], f'{mode}: float64 output error {err}'
    sum((o * w.double()).sum() for o, w in zip(outs64, weights)).backward()
    rtol64 = FLOAT64_TOLERANCES['grad_rel']
    assert relative_error(x_jt64.grad.numpy(), x_ref64.grad.numpy()) <= rtol64
    ref64_params = dict(ref64.named_parameters())
    for name, p in wrapper64.named_parameters():
        err = relative_error(p.grad.numpy(), ref64_params[name].grad.numpy())
        assert err <= rtol64, f'{mode}: float64 grad of {name}: relative error {err}'

    ref_buffers = dict(ref.named_buffers())
    for name, b in wrapper.named_buffers():
        np.testing.assert_allclose(b.numpy(), ref_buffers[name].numpy(), atol=1e-5, rtol=1e-5,
                                   err_msg=name)


def test_bridged_out_indices_and_frozen_stages():
    wrapper = build_bridged(out_indices=(0, 1, 2), frozen_stages=1)
    assert not any(k.startswith('layer4.') for k in wrapper.state_dict())
    ref = make_torch_reference()
    load_reference_into(wrapper, ref)  # drops layer4.* and attnpool.*
    for name, p in wrapper.named_parameters():
        frozen = name.split('.')[0] in ('conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'layer1')
        assert p.requires_grad is (not frozen), name

    wrapper.train()
    before = {k: v.clone() for k, v in wrapper.named_buffers()}
    outs = wrapper(torch.from_numpy(make_input()))
    assert len(outs) == 3
    sum(o.sum() for o in outs).backward()
    for name, b in wrapper.named_buffers():
        if name.endswith('num_batches_tracked'):
            continue
        changed = not torch.equal(before[name], b)
        assert changed is name.startswith(('layer2', 'layer3')), name
    for name, p in wrapper.named_parameters():
        assert (p.grad is None) is (not p.requires_grad), name

    # The frozen part computes with running statistics: it equals the reference in eval mode.
    ref.eval()
    ref_c2 = torch_stage_outputs(ref, torch.from_numpy(make_input()), num_stages=1)[0]
    assert (outs[0] - ref_c2).abs().max().item() < OUT_ATOL


def test_bridged_norm_eval():
    wrapper = build_bridged(norm_eval=True)
    ref = make_torch_reference()
    load_reference_into(wrapper, ref)
    wrapper.train()
    before = {k: v.clone() for k, v in wrapper.named_buffers()}
    outs = wrapper(torch.from_numpy(make_input()))
    for name, b in wrapper.named_buffers():
        assert torch.equal(before[name], b), name
    ref.eval()
    for o, o_ref in zip(outs, torch_stage_outputs(ref, torch.from_numpy(make_input()))):
        assert (o - o_ref).abs().max().item() < OUT_ATOL
    sum(o.sum() for o in outs).backward()
    assert wrapper.bn1.weight.grad is not None and wrapper.bn1.weight.grad.abs().max() > 0


def test_bridged_bad_out_indices():
    with pytest.raises(ValueError, match='out_indices'):
        build_bridged(out_indices=(0, 4))


# --------------------------------------------------------------------------------------------------
# Checkpoint loader
# --------------------------------------------------------------------------------------------------
def fake_clip_state_dict(prefix: str = 'visual.', dtype=torch.float16) -> dict:
    ref = make_torch_reference(layers=[1, 1, 1, 1])
    sd = {prefix + k: (v.to(dtype) if v.is_floating_point() else v)
          for k, v in ref.state_dict().items()}
    # A few text-tower entries, as in a full CLIP model.
    sd.update({'token_embedding.weight': torch.zeros(10, 8, dtype=dtype),
               'transformer.resblocks.0.attn.in_proj_weight': torch.zeros(24, 8, dtype=dtype),
               'positional_embedding': torch.zeros(77, 8, dtype=dtype),
               'logit_scale': torch.zeros((), dtype=dtype)})
    return sd


@pytest.mark.parametrize('layout', ['openai', 'open_clip', 'trunk', 'bare'])
def test_loader_strips_prefixes_and_keeps_visual(tmp_path, layout):
    if layout == 'openai':
        obj = fake_clip_state_dict('visual.')
    elif layout == 'open_clip':
        obj = {'epoch': 3, 'state_dict': {'module.' + k: v
                                          for k, v in fake_clip_state_dict('visual.').items()}}
    elif layout == 'trunk':
        obj = fake_clip_state_dict('visual.trunk.')
    else:
        obj = {k: v for k, v in fake_clip_state_dict('').items() if k.split('.')[0] in
               clip_checkpoint.TRUNK_GROUPS}
    path = tmp_path / 'clip.pt'
    torch.save(obj, path)

    sd = load_clip_visual_state_dict(str(path))
    expected = make_torch_reference(layers=[1, 1, 1, 1]).state_dict()
    assert set(sd) == set(expected)
    assert sd['conv1.weight'].dtype == torch.float32
    assert sd['layer1.0.bn1.num_batches_tracked'].dtype == torch.int64
    torch.testing.assert_close(sd['layer2.0.conv2.weight'],
                               expected['layer2.0.conv2.weight'].half().float())


@pytest.mark.filterwarnings('ignore:`torch.jit.trace:FutureWarning')
def test_loader_reads_torchscript_archive(tmp_path):
    """OpenAI's releases are TorchScript archives of the whole CLIP model, stored in float16."""

    class FakeCLIP(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.visual = make_torch_reference(layers=[1, 1, 1, 1])
            self.token_embedding = torch.nn.Embedding(10, 8)

        def forward(self, x):
            return self.visual.layer1(self.visual.stem(x))

    model = FakeCLIP().eval()
    scripted = torch.jit.trace(model, torch.zeros(1, 3, 32, 32)).half()
    path = tmp_path / 'RN_fake.pt'
    scripted.save(str(path))

    sd = load_clip_visual_state_dict(str(path))
    assert 'token_embedding.weight' not in sd and 'attnpool.c_proj.weight' in sd
    assert set(sd) == set(model.visual.state_dict())
    assert all(v.dtype == torch.float32 for k, v in sd.items() if 'num_batches' not in k)


def test_filter_for_backbone_drops_attnpool_and_unbuilt_stages(caplog):
    sd = {k[len('visual.'):]: v for k, v in fake_clip_state_dict().items()
          if k.startswith('visual.')}
    model = CLIPResNet(layers=[1, 1, 1, 1], width=WIDTH, out_indices=(0, 1, 2))
    logger = logging.getLogger('test_clip_resnet')
    with caplog.at_level(logging.INFO, logger='test_clip_resnet'):
        kept = filter_for_backbone(sd, model.state_dict().keys(), logger=logger)
    assert set(kept) == set(model.state_dict())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert any('attnpool.*' in m and 'attention pool' in m for m in messages)
    assert any('layer4.*' in m and 'not built' in m for m in messages)

    # Nothing to drop: no message, same keys.
    caplog.clear()
    full = CLIPResNet(layers=[1, 1, 1, 1], width=WIDTH)
    trunk = {k: v for k, v in sd.items() if not k.startswith('attnpool.')}
    with caplog.at_level(logging.INFO, logger='test_clip_resnet'):
        kept = filter_for_backbone(trunk, full.state_dict().keys(), logger=logger)
    assert set(kept) == set(trunk)
    assert not caplog.records


def test_loader_errors(tmp_path):
    missing = tmp_path / 'nope' / 'RN50.pt'
    with pytest.raises(FileNotFoundError, match='RN50.pt'):
        load_clip_visual_state_dict(str(missing))

    text_only = tmp_path / 'text.pt'
    torch.save({'token_embedding.weight': torch.zeros(2, 2)}, text_only)
    with pytest.raises(ValueError, match='no CLIP image-tower keys'):
        load_clip_visual_state_dict(str(text_only))

    vit = tmp_path / 'vit.pt'
    torch.save({'visual.conv1.weight': torch.zeros(8, 3, 4, 4),
                'visual.transformer.resblocks.0.ln_1.weight': torch.zeros(8)}, vit)
    with pytest.raises(ValueError, match='not a CLIP ResNet'):
        load_clip_visual_state_dict(str(vit))


def test_convert_cli_writes_mmengine_checkpoint(tmp_path, capsys):
    src = tmp_path / 'clip.pt'
    torch.save(fake_clip_state_dict(), src)
    dst = tmp_path / 'out' / 'clip_visual.pth'
    assert clip_checkpoint.main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'reading' in out and 'writing' in out and 'done' in out

    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    sd = ckpt['state_dict']
    assert not any(k.startswith('attnpool.') for k in sd)
    model = CLIPResNet(layers=[1, 1, 1, 1], width=WIDTH)
    assert set(sd) == set(model.state_dict())

    # What mmengine's Pretrained init does with it: a strict load into the bridged wrapper.
    from mmengine.runner.checkpoint import load_checkpoint
    wrapper = build_bridged(layers=[1, 1, 1, 1])
    load_checkpoint(wrapper, str(dst), map_location='cpu', strict=True)
    torch.testing.assert_close(wrapper.state_dict()['layer3.0.conv1.weight'],
                               sd['layer3.0.conv1.weight'])

    assert clip_checkpoint.main([str(tmp_path / 'missing.pt'), str(dst)]) == 1
    assert 'missing.pt' in capsys.readouterr().err
