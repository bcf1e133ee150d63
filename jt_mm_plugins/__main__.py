"""``python -m jt_mm_plugins [--warmup]``: show how Jittor is configured (and warm its kernel cache)."""
import sys

from jt_mm_plugins import runtime

if '--warmup' in sys.argv[1:]:
    runtime.warmup()
print(runtime.describe())
