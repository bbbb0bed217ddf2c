"""Models: the course's building blocks, the models of the ten steps, and those of the two studies.

- `kit.models.blocks`: ConvBlock, TransitionBlock, GapHead, count_parameters, CompactNet
- `kit.models.steps`: SetupNet, SkeletonNet, LighterNet, GapNet, CapacityNet, PoolAt5Net
- `kit.models.studies`: NormNet (normalisation), Teacher and Student (distillation)
"""
from kit.models.blocks import NORMS, CompactNet, ConvBlock, GapHead, TransitionBlock, count_parameters, norm_layer
from kit.models.steps import CapacityNet, GapNet, LighterNet, PoolAt5Net, SetupNet, SkeletonNet
from kit.models.studies import FcHead, NormNet, Student, Teacher, xavier_init

__all__ = ["NORMS", "CompactNet", "ConvBlock", "GapHead", "TransitionBlock", "count_parameters", "norm_layer",
           "SetupNet", "SkeletonNet", "LighterNet", "GapNet", "CapacityNet", "PoolAt5Net",
           "NormNet", "FcHead", "Teacher", "Student", "xavier_init"]
