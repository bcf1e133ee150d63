"""Checks shared by the alignment tests built on ``compare_modules`` (ShuffleNetV2, GhostPAN)."""
import torch

from jt_mm_plugins.alignment.compare import format_rows, randomise_convs_  # noqa: F401


def assert_aligned(rows) -> None:
    """Every row of ``compare_modules`` within its tolerance, no float64 decision near its
    boundary, and float64 rows present (they cover the float32 gradients float32 cannot decide)."""
    table = format_rows(rows)
    print('\n' + table)
    assert all(r.ok for r in rows), table
    margin_rows = [r for r in rows if r.kind == 'margin f64']
    assert len(margin_rows) == 1 and margin_rows[0].max_abs == 0, table
    assert any(r.kind == 'param grad f64' for r in rows) and \
        any(r.kind == 'input grad f64' for r in rows), table


def stop_gradients(models, suffixes) -> None:
    """``requires_grad=False`` for the parameters whose names end with ``suffixes`` (gradients
    that are exactly 0 by construction: computed, they are rounding noise and not comparable)."""
    for model in models:
        for name, p in model.named_parameters():
            if name.endswith(tuple(suffixes)):
                p.requires_grad_(False)


def assert_buffers_close(model: torch.nn.Module, reference: torch.nn.Module, atol: float) -> None:
    """Running statistics within ``atol``, ``num_batches_tracked`` equal."""
    own = dict(model.named_buffers())
    for name, b in reference.named_buffers():
        a = own[name]
        if name.endswith('num_batches_tracked'):
            assert int(a) == int(b), name
        else:
            err = float((a.double() - b.double()).abs().max())
            assert err <= atol, f'{name}: max abs error {err:.3g} > {atol}'


def bridged_twins(cfg: dict, state_dict: dict):
    """A float32 and a float64 bridged module built from ``cfg`` (mmdet's MODELS), both holding
    ``state_dict`` (loaded strictly)."""
    from mmdet.registry import MODELS
    twins = []
    for _ in range(2):
        model = MODELS.build(dict(cfg))
        result = model.load_state_dict(state_dict, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        twins.append(model)
    return twins[0], twins[1].double()
