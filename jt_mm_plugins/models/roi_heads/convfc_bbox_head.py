"""Jittor twins of mmdet 3.3.0's ``ConvFCBBoxHead``, ``Shared2FCBBoxHead`` and
``Shared4Conv1FCBBoxHead`` (``mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py``)."""
from typing import Optional, Tuple

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead
from jt_mm_plugins.models.layers.activation import relu
from jt_mm_plugins.models.layers.conv_module import ConvModule
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .bbox_head import JittorBBoxHead, xavier_uniform_init_


@register_jittor_module(bridge_base=BridgedBBoxHead)
class JittorConvFCBBoxHead(JittorBBoxHead):
    r"""More general bbox head, with shared conv and fc layers and two optional separated branches,
    in Jittor (mmdet's ``ConvFCBBoxHead``, the box head of
    `Faster R-CNN <https://arxiv.org/abs/1506.01497>`_ with
    `FPN <https://arxiv.org/abs/1612.03144>`_).

    .. code-block:: none

                                    /-> cls convs -> cls fcs -> cls
        shared convs -> shared fcs
                                    \-> reg convs -> reg fcs -> reg

    Submodules keep mmdet's names (``shared_convs.0.conv.weight``, ``shared_fcs.0.weight``,
    ``cls_fcs``, ``reg_fcs``, ``fc_cls``, ``fc_reg``), so mmdet's ``roi_head.bbox_head.*``
    checkpoint keys load strictly. Initialisation is mmdet's: Xavier uniform for the fcs of the
    three branches, N(0, 0.01^2) for ``fc_cls``, N(0, 0.001^2) for ``fc_reg``, zero biases, and
    ConvModule's own (Kaiming) initialisation for the convs.

    Args:
        num_shared_convs (int): Shared 3x3 convs. Defaults to 0.
        num_shared_fcs (int): Shared fcs. Defaults to 0.
        num_cls_convs (int): Convs of the classification branch. Defaults to 0.
        num_cls_fcs (int): Fcs of the classification branch. Defaults to 0.
        num_reg_convs (int): Convs of the regression branch. Defaults to 0.
        num_reg_fcs (int): Fcs of the regression branch. Defaults to 0.
        conv_out_channels (int): Channels of the convs. Defaults to 256.
        fc_out_channels (int): Features of the fcs. Defaults to 1024.
        conv_cfg (dict, optional): Conv config of the ConvModules. Defaults to None.
        norm_cfg (dict, optional): Norm config of the ConvModules. Defaults to None.
        **kwargs: Arguments of :class:`JittorBBoxHead` (``in_channels``, ``num_classes``,
            ``roi_feat_size``, ``bbox_coder``, ``loss_cls``, ``loss_bbox`` ...).
    """

    def __init__(self,
                 num_shared_convs: int = 0,
                 num_shared_fcs: int = 0,
                 num_cls_convs: int = 0,
                 num_cls_fcs: int = 0,
                 num_reg_convs: int = 0,
                 num_reg_fcs: int = 0,
                 conv_out_channels: int = 256,
                 fc_out_channels: int = 1024,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 *args,
                 **kwargs) -> None:
        # Set before the base constructor, which builds the predictors through _init_predictors.
        self.num_shared_convs = num_shared_convs
        self.num_shared_fcs = num_shared_fcs
        self.num_cls_convs = num_cls_convs
        self.num_cls_fcs = num_cls_fcs
        self.num_reg_convs = num_reg_convs
        self.num_reg_fcs = num_reg_fcs
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        super().__init__(*args, **kwargs)

    def _check_branches(self) -> None:
        """mmdet's assertions, as errors that say what is wrong."""
        owner = type(self).__name__
        counts = (self.num_shared_convs, self.num_shared_fcs, self.num_cls_convs,
                  self.num_cls_fcs, self.num_reg_convs, self.num_reg_fcs)
        if any(c < 0 for c in counts) or sum(counts) == 0:
            raise InputError(f'{owner}: the numbers of convs and fcs must be >= 0 and not all 0, '
                             f'got {counts}')
        if (self.num_cls_convs > 0 or self.num_reg_convs > 0) and self.num_shared_fcs != 0:
            raise InputError(f'{owner}: separate cls/reg convs need num_shared_fcs=0, got '
                             f'{self.num_shared_fcs}')
        if not self.with_cls and (self.num_cls_convs or self.num_cls_fcs):
            raise InputError(f'{owner}: with_cls=False allows no cls convs or fcs')
        if not self.with_reg and (self.num_reg_convs or self.num_reg_fcs):
            raise InputError(f'{owner}: with_reg=False allows no reg convs or fcs')

    def _init_predictors(self, cls_in_features: int, reg_in_features: int) -> None:
        """Build the three branches, then ``fc_cls``/``fc_reg`` on their last features."""
        self._check_branches()
        # mmdet's BBoxHead builds fc_cls/fc_reg before these branches (and rebuilds them after):
        # holding their places first gives mmdet's parameter order, so the optimizer's parameter
        # groups (and an optimizer state saved by the twin) line up.
        self.fc_cls = self.fc_reg = None
        self.shared_convs, self.shared_fcs, last_layer_dim = self._add_conv_fc_branch(
            self.num_shared_convs, self.num_shared_fcs, self.in_channels, True)
        self.shared_out_channels = last_layer_dim
        self.cls_convs, self.cls_fcs, self.cls_last_dim = self._add_conv_fc_branch(
            self.num_cls_convs, self.num_cls_fcs, self.shared_out_channels)
        self.reg_convs, self.reg_fcs, self.reg_last_dim = self._add_conv_fc_branch(
            self.num_reg_convs, self.num_reg_fcs, self.shared_out_channels)
        if self.num_shared_fcs == 0 and not self.with_avg_pool:
            if self.num_cls_fcs == 0:
                self.cls_last_dim *= self.roi_feat_area
            if self.num_reg_fcs == 0:
                self.reg_last_dim *= self.roi_feat_area
        super()._init_predictors(self.cls_last_dim, self.reg_last_dim)

    def _add_conv_fc_branch(self,
                            num_branch_convs: int,
                            num_branch_fcs: int,
                            in_channels: int,
                            is_shared: bool = False) -> Tuple[jt.nn.ModuleList, jt.nn.ModuleList,
                                                              int]:
        """Add a shared or separate branch: convs -> avg pool (optional) -> fcs.

        Returns:
            tuple: ``(convs, fcs, last_layer_dim)``.
        """
        last_layer_dim = in_channels
        branch_convs = jt.nn.ModuleList()
        for i in range(num_branch_convs):
            conv_in_channels = last_layer_dim if i == 0 else self.conv_out_channels
            branch_convs.append(
                ConvModule(
                    conv_in_channels,
                    self.conv_out_channels,
                    3,
                    padding=1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg))
        if num_branch_convs > 0:
            last_layer_dim = self.conv_out_channels
        branch_fcs = jt.nn.ModuleList()
        if num_branch_fcs > 0:
            # the shared branch only considers with_avg_pool; separate branches also need
            # num_shared_fcs == 0 to see spatial features
            if (is_shared or self.num_shared_fcs == 0) and not self.with_avg_pool:
                last_layer_dim *= self.roi_feat_area
            for i in range(num_branch_fcs):
                fc_in_channels = last_layer_dim if i == 0 else self.fc_out_channels
                branch_fcs.append(jt.nn.Linear(fc_in_channels, self.fc_out_channels))
            last_layer_dim = self.fc_out_channels
        return branch_convs, branch_fcs, last_layer_dim

    def init_weights(self) -> None:
        """mmdet's default ``init_cfg``: the base head's, plus Xavier uniform for every fc of
        ``shared_fcs``, ``cls_fcs`` and ``reg_fcs``."""
        super().init_weights()
        for branch in (self.shared_fcs, self.cls_fcs, self.reg_fcs):
            for fc in branch:
                xavier_uniform_init_(fc)

    def _branch(self, x: jt.Var, convs: jt.nn.ModuleList, fcs: jt.nn.ModuleList) -> jt.Var:
        """A separate branch: its convs, flatten (after the optional avg pool), its fcs."""
        for conv in convs:
            x = conv(x)
        if x.ndim > 2:
            if self.with_avg_pool:
                x = self._avg_pool(x)
            x = self._flatten(x)
        for fc in fcs:
            x = relu(fc(x))
        return x

    def execute(self, x: jt.Var) -> Tuple[Optional[jt.Var], Optional[jt.Var]]:
        """Classification scores and box deltas of RoI features.

        Args:
            x (jt.Var): RoI features (n, C, h, w).

        Returns:
            tuple: ``cls_score`` (n, num_classes + 1) and ``bbox_pred`` (n, 4 * num_classes or 4);
            either is None without its branch.
        """
        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            if self.with_avg_pool:
                x = self._avg_pool(x)
            x = self._flatten(x)
            for fc in self.shared_fcs:
                x = relu(fc(x))
        x_cls = self._branch(x, self.cls_convs, self.cls_fcs)
        x_reg = self._branch(x, self.reg_convs, self.reg_fcs)
        cls_score = self.fc_cls(x_cls) if self.with_cls else None
        bbox_pred = self.fc_reg(x_reg) if self.with_reg else None
        return cls_score, bbox_pred


@register_jittor_module(bridge_base=BridgedBBoxHead)
class JittorShared2FCBBoxHead(JittorConvFCBBoxHead):
    """Two shared fcs then ``fc_cls``/``fc_reg``: the box head of mmdet's Faster R-CNN with
    `FPN <https://arxiv.org/abs/1612.03144>`_ (mmdet's ``Shared2FCBBoxHead``), in Jittor.

    Args:
        fc_out_channels (int): Features of the shared fcs. Defaults to 1024.
        **kwargs: Arguments of :class:`JittorBBoxHead`.
    """

    def __init__(self, fc_out_channels: int = 1024, *args, **kwargs) -> None:
        super().__init__(
            num_shared_convs=0,
            num_shared_fcs=2,
            num_cls_convs=0,
            num_cls_fcs=0,
            num_reg_convs=0,
            num_reg_fcs=0,
            fc_out_channels=fc_out_channels,
            *args,
            **kwargs)


@register_jittor_module(bridge_base=BridgedBBoxHead)
class JittorShared4Conv1FCBBoxHead(JittorConvFCBBoxHead):
    """Four shared 3x3 convs and one shared fc then ``fc_cls``/``fc_reg`` (mmdet's
    ``Shared4Conv1FCBBoxHead``, used with GN in
    `Group Normalization <https://arxiv.org/abs/1803.08494>`_ configs), in Jittor.

    Args:
        fc_out_channels (int): Features of the shared fc. Defaults to 1024.
        **kwargs: Arguments of :class:`JittorConvFCBBoxHead` (``conv_out_channels``,
            ``norm_cfg`` ...) and :class:`JittorBBoxHead`.
    """

    def __init__(self, fc_out_channels: int = 1024, *args, **kwargs) -> None:
        super().__init__(
            num_shared_convs=4,
            num_shared_fcs=1,
            num_cls_convs=0,
            num_cls_fcs=0,
            num_reg_convs=0,
            num_reg_fcs=0,
            fc_out_channels=fc_out_channels,
            *args,
            **kwargs)
