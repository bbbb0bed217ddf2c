"""What a model is made of: its layer-by-layer summary and its parameter count."""
from __future__ import annotations

from torch import nn

from kit.models import count_parameters

__all__ = ["summary", "count_parameters"]

COLUMNS = ("input_size", "output_size", "num_params", "kernel_size")
PARAM_COLUMN = 1 + COLUMNS.index("num_params")  # counted after the layer names; numbers read best right-aligned
GAP = "  "


def summary(model: nn.Module, input_size: tuple[int, ...], *, batch: int = 1, verbose: int = 0):
    """torchinfo's summary for an input of shape `input_size` (C, H, W), computed on the CPU.

    The returned object prints as a table (and shows as one in a notebook); its
    `trainable_params` is the number the course's budgets count. Each column is
    as wide as its widest entry, not torchinfo's fixed 25 characters, so the
    table of a course model fits a notebook's width instead of wrapping.
    """
    from torchinfo import summary as torchinfo_summary

    stats = torchinfo_summary(
        model, input_size=(batch, *input_size), device="cpu", verbose=verbose,
        col_names=COLUMNS, row_settings=("var_names",),
    )
    stats.formatting = _fitted(stats)
    return stats


def _fitted(stats):
    """torchinfo's formatting for `stats`, with every column fitted to its widest entry.

    The table keeps torchinfo's rows, names and order; only the padding differs
    (the test suite compares reports made with the wider table by their words).
    """
    from torchinfo.formatting import FormattingOptions

    class Fitted(FormattingOptions):
        measured: list[int]  # the widest entry so far: the name column's, then each column's
        widths: list[int] | None = None  # the measured widths once every row has been seen; None while measuring

        def format_row(self, layer_name, row_values):
            cells = [layer_name, *(row_values.get(c, "") for c in self.col_names)]
            if self.widths is None:
                self.measured = [max(m, len(c)) for m, c in zip(self.measured, cells)]
                return ""
            return GAP.join(f"{c:>{w}}" if i == PARAM_COLUMN else f"{c:<{w}}"
                            for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip() + "\n"

        def get_total_width(self) -> int:
            return sum(self.widths) + len(GAP) * (len(self.widths) - 1)

    old = stats.formatting
    fitted = Fitted(old.max_depth, old.verbose, old.col_names, old.col_width, old.row_settings)
    fitted.params_units, fitted.macs_units = old.params_units, old.macs_units
    fitted.measured = [0] * (1 + len(old.col_names))
    fitted.header_row()
    fitted.layers_to_str(stats.summary_list, stats.total_params)
    fitted.widths = fitted.measured
    return fitted
