# The default demo (mixed: CLIPResNet + JittorFPN in Jittor, mmdet's heads) set up for an exact
# resume: a run killed in epoch k and resumed (`tools/train.py CONFIG --resume`) logs the same losses
# as the uninterrupted run from epoch k on. Two changes, both needed (see EpochSeedHook's docstring):
#   * EpochSeedHook seeds random, numpy, torch and Jittor from (seed, epoch) at each epoch start;
#   * the training loader's workers start afresh every epoch (persistent workers carry random states
#     that no checkpoint holds).
# With them the random streams differ from the plain demo's, so its numbers are this config's own.
_base_ = ['./faster_rcnn_clip_rn_jittor_fpn_demo.py']

custom_hooks = [dict(type='EpochSeedHook')]
train_dataloader = dict(persistent_workers=False)
randomness = dict(seed=0, deterministic=True)
