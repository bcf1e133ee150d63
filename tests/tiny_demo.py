"""A 64-px, 4-image copy of the demo for end-to-end tests (tools, resume, memory): its data and a
config that inherits a demo config with a lighter head. Not a test module (no ``test_`` prefix)."""
import importlib.util
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# {base}, {data_root}, {loader} (extra train_dataloader keys) and {extra} (more lines) are filled in.
TINY_CONFIG = '''
_base_ = [{base!r}]
data_root = {data_root!r}
train_dataloader = dict(batch_size=2, {loader}dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=1))
# A lighter head keeps each CPU iteration short.
model = dict(
    roi_head=dict(bbox_head=dict(fc_out_channels=64)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))
{extra}
'''


def load_tool(name: str):
    """``tools/<name>.py`` as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_tiny_data(data_root, num_train: int = 4, num_val: int = 2) -> str:
    """Toy shapes of 64 px under ``data_root``; returns it with a trailing slash."""
    gen = load_tool('generate_demo_dataset')
    assert gen.main(['--out-dir', str(data_root), '--num-train', str(num_train), '--num-val',
                     str(num_val), '--image-size', '64']) == 0
    return str(data_root) + '/'


def write_tiny_config(path, base: str, data_root: str,
                      loader: str = 'num_workers=0, persistent_workers=False, ',
                      extra: str = 'train_cfg = dict(max_epochs=1)') -> str:
    """Write the tiny config inheriting ``base`` to ``path``; returns the path."""
    with open(path, 'w') as f:
        f.write(TINY_CONFIG.format(base=base, data_root=data_root, loader=loader, extra=extra))
    return str(path)
