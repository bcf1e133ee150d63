"""Errors shared by the Jittor components."""


class InputError(ValueError, AssertionError):
    """A constructor argument, config value or input that a Jittor component refuses.

    mmdet's PyTorch twins refuse most of these with ``assert``, so code written for them catches
    ``AssertionError``; existing code (and this project's own tests) catches ``ValueError``. This
    class is both, so a Jittor twin is caught wherever its twin would be, with a message naming the
    component and the argument.
    """
