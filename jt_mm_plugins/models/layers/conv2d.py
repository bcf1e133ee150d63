"""``Conv2d``: Jittor's ``nn.Conv2d`` with the bias added by multi-threaded CPU kernels.

Same constructor, parameters (``weight``, ``bias``), values and state-dict keys as ``jt.nn.Conv2d``
(so ``isinstance(m, jt.nn.Conv2d)`` holds); only the bias addition and its gradient differ in how
they run: on CPU, in float32, :func:`jt_mm_plugins.ops.add_channel_bias` spreads them over the
OpenMP threads, where Jittor's own broadcast addition and its reduction are single-threaded loops.
Anywhere else (CUDA, where Jittor also has its depthwise kernel; other dtypes) it is
``jt.nn.Conv2d`` unchanged.
"""
from jt_mm_plugins.ops.channel_bias import add_channel_bias
from jt_mm_plugins.ops.cpu_kernels import cpu_float32
from jt_mm_plugins.runtime import jt


class Conv2d(jt.nn.Conv2d):
    """A 2-D convolution (see ``jt.nn.Conv2d`` for the arguments)."""

    def execute(self, x: jt.Var) -> jt.Var:
        if self.bias is None or not cpu_float32(x, self.weight, self.bias):
            return super().execute(x)
        y = jt.nn.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation,
                         self.groups)
        return add_channel_bias(y, self.bias)
