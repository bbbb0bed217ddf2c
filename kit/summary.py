"""What a model is made of: its layer-by-layer summary and its parameter count."""
from __future__ import annotations

from torch import nn

from kit.models import count_parameters

__all__ = ["summary", "count_parameters"]


def summary(model: nn.Module, input_size: tuple[int, ...], *, batch: int = 1, verbose: int = 0):
    """torchinfo's summary for an input of shape `input_size` (C, H, W), computed on the CPU.

    The returned object prints as a table (and shows as one in a notebook); its
    `trainable_params` is the number the course's budgets count.
    """
    from torchinfo import summary as torchinfo_summary

    return torchinfo_summary(
        model, input_size=(batch, *input_size), device="cpu", verbose=verbose,
        col_names=("input_size", "output_size", "num_params", "kernel_size"),
        row_settings=("var_names",),
    )
