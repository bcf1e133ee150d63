"""The torch <-> Jittor bridge: tensor conversion, autograd, module wrapper and registration."""
from .function import call_jittor
from .heads import BridgedDenseHead, BridgedRoIHead
from .module import JittorModuleWrapper, state_dict_to_jittor
from .registry import JITTOR_MODELS, build_jittor_module, jittor_type, register_jittor_module
from .tensors import jittor_to_torch, torch_to_jittor

__all__ = [
    'call_jittor', 'BridgedDenseHead', 'BridgedRoIHead', 'JittorModuleWrapper',
    'state_dict_to_jittor', 'JITTOR_MODELS',
    'build_jittor_module', 'jittor_type', 'register_jittor_module', 'jittor_to_torch',
    'torch_to_jittor'
]
