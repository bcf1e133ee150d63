"""tools/prediction_spread.py: the measures on hand-made predictions, and the tool end to end on
a 64-px DETR with random weights."""
import pytest
import torch

from tiny_demo import generate_tiny_data, load_tool

spread_tool = load_tool('prediction_spread')

GT = [torch.tensor([[0., 0., 10., 10.], [20., 20., 40., 40.]]),
      torch.tensor([[50., 50., 60., 60.]])]
FIXED = torch.tensor([[0., 0., 10., 10.], [30., 30., 50., 50.]])  # the same boxes everywhere


def test_collapsed_predictions_fit_each_other_better_than_the_objects():
    collapsed = spread_tool.spread([dict(bboxes=FIXED, gt=g) for g in GT])
    assert collapsed['cross_image_iou'] == pytest.approx(1.0)
    # image 0: GT 1 exact (IoU 1), GT 2 overlaps FIXED[1] by 100/700; image 1: no overlap
    assert collapsed['gt_iou'] == pytest.approx((1.0 + 100 / 700 + 0.0) / 3)
    assert collapsed['recall'] == pytest.approx(1 / 3)

    following = spread_tool.spread([dict(bboxes=g, gt=g) for g in GT])
    assert following['gt_iou'] == pytest.approx(1.0) and following['recall'] == 1.0
    assert following['cross_image_iou'] == pytest.approx(0.0)


def test_tool_on_a_tiny_detr(tmp_path, capsys):
    data_root = generate_tiny_data(tmp_path / 'data')
    config = tmp_path / 'detr_tiny.py'
    config.write_text(
        "_base_ = ['%s/configs/demo/detr_r18_demo_mmdet.py']\n"
        "data_root = %r\n"
        "train_dataloader = dict(dataset=dict(data_root=data_root))\n"
        "test_dataloader = dict(num_workers=0, persistent_workers=False,\n"
        "                       dataset=dict(data_root=data_root))\n"
        "test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        % (spread_tool.osp.dirname(spread_tool.osp.dirname(spread_tool.__file__)), data_root))
    ckpt = str(tmp_path / 'init.pth')
    assert load_tool('export_init_weights').main([str(config), ckpt]) == 0

    result = spread_tool.main([str(config), ckpt, '--num-images', '3', '--split', 'train',
                               '--work-dir', str(tmp_path / 'work')])
    out = capsys.readouterr().out
    assert out.count('\nimage ') + out.startswith('image ') == 3
    assert 'train split, 3 images' in out
    assert 0.0 <= result['gt_iou'] <= 1.0 and 0.0 <= result['cross_image_iou'] <= 1.0

    with pytest.raises(SystemExit):
        spread_tool.main([str(config), ckpt, '--num-images', '1'])
    with pytest.raises(SystemExit):
        spread_tool.main([str(config), str(tmp_path / 'missing.pth')])
