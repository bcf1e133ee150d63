"""Checks shared by the whole-detector alignment tests (test_faster_rcnn.py, test_mixed_heads.py):
a candidate detector with Jittor parts against mmdet's detector holding identical weights."""
import copy
from typing import Dict

import torch

from jt_mm_plugins.alignment import margins


def predict_both(reference, candidate, data):
    """Eval-mode predictions of both detectors on the same batch: (reference's, candidate's)."""
    results = []
    for model in (reference, candidate):
        model.eval()
        with torch.no_grad():
            results.append(model.predict(data['inputs'], copy.deepcopy(data['data_samples'])))
    return results


def assert_same_detections(reference, candidate, data, box_atol: float, score_atol: float) -> None:
    """Eval-mode predictions: same count and labels, boxes and scores within the tolerances."""
    for r, g in zip(*predict_both(reference, candidate, data)):
        r, g = r.pred_instances, g.pred_instances
        assert len(g) == len(r) > 0
        torch.testing.assert_close(g.scores, r.scores, atol=score_atol, rtol=0)
        torch.testing.assert_close(g.bboxes, r.bboxes, atol=box_atol, rtol=0)
        assert torch.equal(g.labels, r.labels)


def assert_same_losses_and_gradients(reference, candidate, data, loss_rtol: float,
                                     grad_rtol: float) -> Dict[str, float]:
    """Train-mode losses within ``loss_rtol`` and every parameter gradient of the summed loss that
    float32 decides within ``grad_rtol`` (relative to the reference's largest entry); returns the
    gradient differences."""
    losses = []
    for model in (reference, candidate):
        model.train()
        model.zero_grad(set_to_none=True)
        losses.append(model.loss(data['inputs'], copy.deepcopy(data['data_samples'])))
    ref_losses, got_losses = losses
    assert set(got_losses) == set(ref_losses)
    for name, value in ref_losses.items():
        values = value if isinstance(value, list) else [value]
        got = got_losses[name] if isinstance(value, list) else [got_losses[name]]
        for r, g in zip(values, got):
            torch.testing.assert_close(g.reshape(()).float(), r.reshape(()).float(),
                                       rtol=loss_rtol, atol=1e-6, msg=lambda m: f'{name}: {m}')
    for model, model_losses in ((reference, ref_losses), (candidate, got_losses)):
        model.parse_losses(model_losses)[0].backward()
    # Which gradients float32 decides (jt_mm_plugins/alignment/margins.py): a parameter's gradient
    # is compared only when every ReLU / max-pool decision after its module's first call lies
    # farther from its boundary, in a float64 run of the reference, than 10x the float32 error
    # bound. At this size the backbone, the neck and the RPN are upstream of ReLU inputs ~1e-6
    # from zero (float32 error ~5e-6), and the RoIs come in another order in float64 (proposals
    # sorted on scores 1e-7 apart), so that the RoI head's ReLUs cannot be checked element by
    # element either: only the last layers (fc_cls, fc_reg) are compared; the others are counted.
    # Gradients of every component are compared, well-defined, in the component tests.
    def run(model, dtype):
        model.train()
        model_losses = model.loss(data['inputs'].to(dtype), copy.deepcopy(data['data_samples']))
        model.parse_losses(model_losses)[0].backward()

    report = margins.all_decisions_report(reference, run)
    ref_params = dict(reference.named_parameters())
    errors, not_decidable = {}, []
    for name, p in candidate.named_parameters():
        q = ref_params[name]
        if q.grad is None:
            assert p.grad is None or not p.grad.abs().any(), name
            continue
        if not report.param_grad_well_defined(name):
            not_decidable.append(name)
            continue
        errors[name] = float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-6))
    print('worst relative gradient differences:', sorted(errors.items(), key=lambda x: -x[1])[:6],
          f'; {len(not_decidable)} gradients not decidable in float32; {report.summary()}')
    assert errors, 'no gradient decidable in float32'
    assert all(v <= grad_rtol for v in errors.values()), errors
    return errors
