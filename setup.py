"""jt-mm-plugins: Jittor detection components inside MMDetection 3.x."""
from setuptools import find_packages, setup

setup(
    name='jt_mm_plugins',
    version='0.1.0',
    description='Jittor-implemented detection components for MMDetection 3.x, '
    'bridged to PyTorch autograd, with alignment and benchmark tools.',
    packages=find_packages(include=['jt_mm_plugins', 'jt_mm_plugins.*']),
    python_requires='>=3.9',
    # Exact pins live in requirements.txt (installed by scripts/setup.sh); these are the minimums.
    install_requires=['numpy<2', 'jittor>=1.3.9', 'torch>=2.0', 'mmengine>=0.10', 'mmdet>=3.3,<3.4',
                      'mmcv>=2.0,<2.2'],
)
