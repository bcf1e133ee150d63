"""Checks shared by the whole-detector alignment tests (test_faster_rcnn.py, test_mixed_heads.py,
the GFL and single-stage detector tests): a candidate detector with Jittor parts against mmdet's
detector holding identical weights."""
import copy
from typing import Dict, Iterable, Optional

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


def assert_selections_decided(reference, data, training: bool, expected_kinds: Iterable[str],
                              sort_cut: Optional[int] = None) -> margins.MarginReport:
    """A float64 and a float32 copy of mmdet's detector run the batch (train: loss and backward;
    eval: predict); assert that float32 decides every selection of it (sorts / top-k cuts, NMS and
    the order of its survivors, ``score_thr``, ``min_bbox_size``, the MaxIoUAssigner's thresholds:
    :func:`margins.record_selections`, ``sort_cut`` as there) and that each of ``expected_kinds``
    was recorded (so that the check cannot pass on a flow that was not recorded). ReLU / max-pool
    decisions are left to the gradient rule. Returns the report (for
    :func:`assert_same_losses_and_gradients`)."""
    def run(model, dtype):
        model.train(training)
        inputs, samples = data['inputs'].to(dtype), copy.deepcopy(data['data_samples'])
        if training:
            model.parse_losses(model.loss(inputs, samples))[0].backward()
        else:
            with torch.no_grad():
                model.predict(inputs, samples)

    report = margins.all_decisions_report(reference, run, sort_cut=sort_cut)
    undecided = [f'{d.label} (margin {d.margin:.1e}, float32 error {report.errors32[d.index]:.1e})'
                 for d in report.undecided_selections]
    assert not undecided, f'selections within float32 error of their boundary: {undecided}'
    recorded = {d.kind for d in report.trace64.decisions}
    assert set(expected_kinds) <= recorded, f'not recorded: {set(expected_kinds) - recorded}'
    selections = [d for d in report.trace64.decisions if d.kind not in margins.GRADIENT_MASKS]
    headroom = {d.label: d.margin / margins.float32_bound(report.errors32[d.index], d.scale)
                for d in selections}
    tightest = min(headroom, key=headroom.get)
    print(f'{"train" if training else "predict"}: {len(selections)} selections, all decided in '
          f'float32; tightest {tightest}: margin {headroom[tightest]:.1f} x the float32 bound')
    return report


def assert_same_detections(reference, candidate, data, box_atol: float, score_atol: float) -> None:
    """Eval-mode predictions: same count and labels, boxes and scores within the tolerances."""
    for r, g in zip(*predict_both(reference, candidate, data)):
        r, g = r.pred_instances, g.pred_instances
        assert len(g) == len(r) > 0
        torch.testing.assert_close(g.scores, r.scores, atol=score_atol, rtol=0)
        torch.testing.assert_close(g.bboxes, r.bboxes, atol=box_atol, rtol=0)
        assert torch.equal(g.labels, r.labels)


def assert_same_losses_and_gradients(reference, candidate, data, loss_rtol: float,
                                     grad_rtol: float,
                                     report: Optional[margins.MarginReport] = None
                                     ) -> Dict[str, float]:
    """Train-mode losses within ``loss_rtol`` and every parameter gradient of the summed loss that
    float32 decides within ``grad_rtol`` (relative to the reference's largest entry); returns the
    gradient differences. ``report``: the train-mode decisions if already measured
    (:func:`assert_selections_decided`)."""
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
    # bound (a decision whose float32 run is not comparable element by element, e.g. RoIs of
    # other proposals, counts as undecided). At test sizes the backbone and the neck are upstream
    # of ReLU inputs ~1e-6 from zero (float32 error ~5e-6): their gradients are counted, not
    # compared. Gradients of every component are compared, well-defined, in the component tests.
    def run(model, dtype):
        model.train()
        model_losses = model.loss(data['inputs'].to(dtype), copy.deepcopy(data['data_samples']))
        model.parse_losses(model_losses)[0].backward()

    if report is None:
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


# The small Faster R-CNN case (jt_mm_plugins.alignment.pairs.small_faster_rcnn_twins): the
# selections each mode must record (RPN: nms_pre ranking, clipping, min_bbox_size, NMS; RoI head:
# assigner, the accuracy's top-1 in training, score_thr and NMS in testing).
FASTER_RCNN_TRAIN_SELECTIONS = ('sort', 'clip', 'min_bbox_size', 'nms', 'nms order', 'assigner',
                                'topk')
FASTER_RCNN_PREDICT_SELECTIONS = ('sort', 'clip', 'min_bbox_size', 'nms', 'nms order',
                                  'score_thr')


def assert_faster_rcnn_losses_match(reference, candidate, data, loss_rtol: float,
                                    grad_rtol: float) -> Dict[str, float]:
    """The selections first (:func:`assert_selections_decided`; the RPN's only sort is its
    ``nms_pre`` ranking, judged at its cut), then losses and well-defined gradients."""
    from jt_mm_plugins.alignment.pairs import SMALL_RPN_NMS_PRE
    report = assert_selections_decided(reference, data, True, FASTER_RCNN_TRAIN_SELECTIONS,
                                       SMALL_RPN_NMS_PRE)
    return assert_same_losses_and_gradients(reference, candidate, data, loss_rtol, grad_rtol,
                                            report)


def assert_faster_rcnn_detections_match(reference, candidate, data, box_atol: float,
                                        score_atol: float) -> None:
    from jt_mm_plugins.alignment.pairs import SMALL_RPN_NMS_PRE
    assert_selections_decided(reference, data, False, FASTER_RCNN_PREDICT_SELECTIONS,
                              SMALL_RPN_NMS_PRE)
    assert_same_detections(reference, candidate, data, box_atol, score_atol)
