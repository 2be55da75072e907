"""HRM (Hierarchical Reasoning Model, arXiv 2506.21734) in plain PyTorch.

A re-implementation of sapientinc/HRM's ``hrm_act_v1`` whose parameter and buffer
names match the reference, so its checkpoints load as they are. Import the pieces
from the submodules (``hrm_model.model``, ``hrm_model.losses``,
``hrm_model.sparse_embedding``); this package deliberately imports nothing heavy.
"""
