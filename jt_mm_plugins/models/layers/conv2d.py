"""``Conv2d``: Jittor's ``nn.Conv2d`` with faster CPU paths for 1x1 convolutions and the bias.

Same constructor, parameters (``weight``, ``bias``), values and state-dict keys as ``jt.nn.Conv2d``
(``isinstance(m, jt.nn.Conv2d)`` holds); in float32 on CPU two parts run differently:

* a 1x1 convolution with stride 1 and no padding is one matrix product per image
  (:func:`jt_mm_plugins.ops.conv1x1`), where Jittor's oneDNN convolution reorders its input, weight
  and output to blocked layouts around every call;
* the bias addition and its gradient are multi-threaded kernels
  (:func:`jt_mm_plugins.ops.add_channel_bias`), where Jittor's broadcast addition and reduction are
  single-threaded loops.

Anywhere else (CUDA, where Jittor also has its depthwise kernel; other dtypes) it is
``jt.nn.Conv2d`` unchanged.
"""
from jt_mm_plugins.ops.channel_bias import add_channel_bias
from jt_mm_plugins.ops.conv1x1 import conv1x1, conv1x1_supported
from jt_mm_plugins.ops.cpu_kernels import cpu_float32
from jt_mm_plugins.runtime import jt


class Conv2d(jt.nn.Conv2d):
    """A 2-D convolution (see ``jt.nn.Conv2d`` for the arguments)."""

    def execute(self, x: jt.Var) -> jt.Var:
        if conv1x1_supported(x, self.weight, self.stride, self.padding, self.dilation,
                             self.groups):
            y = conv1x1(x, self.weight)
        elif self.bias is not None and cpu_float32(x, self.weight, self.bias):
            y = jt.nn.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation,
                             self.groups)
        else:
            return super().execute(x)
        return y if self.bias is None else add_channel_bias(y, self.bias)
