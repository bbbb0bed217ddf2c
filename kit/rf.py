"""Receptive-field tables, computed from the model's graph.

The course's formulas, per spatial axis, for a layer with kernel k, stride s,
padding p and dilation d (effective kernel k_eff = d(k - 1) + 1):

    n_out = floor((n_in + 2p - k_eff) / s) + 1
    j_out = j_in * s
    r_out = r_in + (k_eff - 1) * j_in

Tools that add layers in the order their hooks fire get branched and residual
models wrong. Here torch.fx gives the real graph: each tensor carries its own
(n, r, j), and where branches merge (add, cat, ...) the receptive field is the
maximum over the incoming paths. Every computed size is checked against the
shape the model really produces, so the table is right or there is an error.

Rows are the layers that can change geometry, the same kinds every time:
convolutions (1x1 included), pooling, adaptive pooling and GAP, and fully
connected layers (a Linear after a flatten acts as a conv whose kernel covers
the whole map, as FC6 in VGG-16). Normalisation, activations and dropout are
never rows.
"""
from __future__ import annotations

import contextlib
import io
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

Pair = tuple  # (height, width): every quantity is kept per axis

COLUMNS = ("layer", "n_in", "r_in", "j_in", "padding", "kernel", "stride", "dilation", "n_out", "r_out", "j_out")


class ReceptiveFieldError(RuntimeError):
    """The model cannot be analysed; the message says which part and why."""


@dataclass(frozen=True)
class Geometry:
    n: Pair  # feature-map size
    r: Pair  # receptive field
    j: Pair  # jump: input pixels between neighbouring outputs


@dataclass(frozen=True)
class Row:
    layer: str
    kind: str
    n_in: Pair
    r_in: Pair
    j_in: Pair
    padding: Pair
    kernel: Pair
    stride: Pair
    dilation: Pair
    n_out: Pair
    r_out: Pair
    j_out: Pair

    def value(self, column: str):
        v = getattr(self, column)
        return v if column == "layer" else (v[0] if v[0] == v[1] else v)


@dataclass
class RFTable:
    """One row per geometry-changing layer, in the order data flows through them."""

    rows: list[Row]
    input_size: tuple[int, int, int]
    notes: list[str] = field(default_factory=list)

    @property
    def receptive_field(self):
        """The final receptive field: an int when both axes agree, else (height, width)."""
        r = self.rows[-1].r_out if self.rows else (1, 1)
        return r[0] if r[0] == r[1] else r

    def column(self, name: str) -> list:
        return [row.value(name) for row in self.rows]

    def _cells(self) -> list[list[str]]:
        return [[str(i), row.layer, *(_num_or_pair(row.value(c)) for c in COLUMNS[1:])]
                for i, row in enumerate(self.rows, 1)]

    def to_markdown(self) -> str:
        header = "| # | " + " | ".join(COLUMNS) + " |"
        rule = "|---:|:---|" + "---:|" * (len(COLUMNS) - 1)
        body = "\n".join("| " + " | ".join(cells) + " |" for cells in self._cells())
        tail = f"\n\nFinal receptive field: **{_num_or_pair(self.receptive_field)}** on an input of {self.input_size}."
        notes = "".join(f"\n\n> {n}" for n in self.notes)
        return f"{header}\n{rule}\n{body}{tail}{notes}"

    _repr_markdown_ = to_markdown

    def __str__(self) -> str:
        cells = [["#", *COLUMNS], *self._cells()]
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        lines = ["  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in cells]
        lines.append(f"final receptive field: {_num_or_pair(self.receptive_field)}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def shows_table(text: str) -> bool:
    """Does a cell's output hold a table as RFTable prints or displays it? Both forms end on its final receptive
    field."""
    return "final receptive field:" in text.lower()


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def _num_or_pair(v) -> str:
    return "×".join(map(_num, v)) if isinstance(v, tuple) else _num(v)


def _pair(v) -> Pair:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# --- the layer arithmetic -------------------------------------------------------------

def _apply(g: Geometry, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool = False) -> Geometry:
    n, r, j = [], [], []
    for a in range(2):
        k_eff = dilation[a] * (kernel[a] - 1) + 1
        span = (g.n[a] + 2 * padding[a] - k_eff) / stride[a]
        n.append((math.ceil(span) if ceil_mode else math.floor(span)) + 1)
        r.append(g.r[a] + (k_eff - 1) * g.j[a])
        j.append(g.j[a] * stride[a])
    return Geometry(tuple(n), tuple(r), tuple(j))


def _conv_padding(padding, kernel: Pair, dilation: Pair) -> Pair:
    if padding == "valid":
        return (0, 0)
    if padding == "same":  # stride 1 only, as torch requires; odd effective kernels pad evenly
        return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
    return _pair(padding)


def _adaptive(g: Geometry, output_size) -> tuple[Pair, Pair, list[str]]:
    out = _pair(output_size)
    out = tuple(g.n[a] if o is None else o for a, o in enumerate(out))
    kernel, stride, notes = [], [], []
    for a in range(2):
        n, o = g.n[a], out[a]
        if n % o == 0:
            kernel.append(n // o)
            stride.append(n // o)
        else:  # windows of unequal width: report the widest, and say so
            kernel.append(max(math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o)))
            stride.append(n / o)
            notes.append(f"adaptive pooling from {n} to {o} has unequal windows; the widest ({kernel[-1]}) is used")
    return tuple(kernel), tuple(stride), notes


# --- walking the graph ------------------------------------------------------------------

PASS_THROUGH = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softmax,
    nn.LogSoftmax, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.Flatten,
)
MERGES = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.cat, torch.stack,
          torch.maximum, torch.minimum, "add", "mul", "sub", "add_", "mul_"}


def _found(*names: str) -> tuple:
    """The functions of these names that this torch has (torch.x or torch.nn.functional.x), as fx sees them."""
    out = []
    for name in names:
        module, _, attr = name.rpartition(".")
        fn = getattr(F if module == "F" else torch, attr, None)
        if fn is not None:
            out.append(fn)
    return tuple(out)


POOLS = _found("F.max_pool2d", "F.avg_pool2d", "torch.max_pool2d", "torch.avg_pool2d")
CONVS = _found("F.conv2d", "torch.conv2d")
ADAPTIVE = _found("F.adaptive_avg_pool2d", "F.adaptive_max_pool2d", "torch.adaptive_avg_pool2d",
                  "torch.adaptive_max_pool2d")
# Layers whose geometry the walker does not model: refused by name, never reported with a wrong number.
REFUSED_MODULES = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Upsample,
                   nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.PixelShuffle, nn.PixelUnshuffle, nn.Unfold,
                   nn.Fold, nn.MaxPool1d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool3d, nn.MaxUnpool2d, nn.FractionalMaxPool2d,
                   nn.LPPool2d, nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ConstantPad2d)
REFUSED_FUNCTIONS = {*_found("F.conv1d", "F.conv3d", "F.conv_transpose1d", "F.conv_transpose2d", "F.conv_transpose3d",
                            "F.interpolate", "F.upsample", "F.pixel_shuffle", "F.pixel_unshuffle", "F.unfold", "F.fold",
                            "F.grid_sample", "F.pad", "F.max_pool1d", "F.max_pool3d", "F.avg_pool1d", "F.avg_pool3d",
                            "F.lp_pool2d", "F.max_unpool2d", "torch.conv1d", "torch.conv3d", "torch.conv_transpose1d",
                            "torch.conv_transpose2d", "torch.conv_transpose3d", "torch.roll", "torch.flip",
                            "torch.max_pool1d", "torch.avg_pool1d", "torch.rot90", "torch.transpose"),
                     "roll", "flip", "unfold", "transpose", "permute", "rot90"}


class _Tracer(fx.Tracer):
    """fx's tracer, remembering which submodule it is inside, to name it when tracing fails."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []

    def call_module(self, m, forward, args, kwargs):
        self.stack.append((self.path_of_module(m), type(m).__name__))
        result = super().call_module(m, forward, args, kwargs)
        self.stack.pop()
        return result


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:
        where = (f"module '{tracer.stack[-1][0]}' ({tracer.stack[-1][1]})" if tracer.stack
                 else f"the top-level forward of {type(model).__name__}")
        raise ReceptiveFieldError(
            f"cannot trace {type(model).__name__}: {where} broke the trace with {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}\n"
            "To make it traceable, keep forward() free of Python control flow on tensor values "
            "(use torch.where or masks instead of `if x.sum() > 0`), and avoid reading tensor sizes "
            "into Python ints to choose a path. No table is given rather than a wrong one."
        ) from None
    return fx.GraphModule(model, graph)


class _Shapes(ShapeProp):
    """ShapeProp, remembering the node it is at, to name the layer that fails."""

    current: fx.Node | None = None

    def run_node(self, n):
        self.current = n
        return super().run_node(n)


def receptive_field(model: nn.Module, input_size: tuple[int, int, int]) -> RFTable:
    """The receptive-field table of `model` for one input of shape (C, H, W)."""
    if len(input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f"input_size must be (C, H, W) of positive ints, got {input_size!r}")
    gm = _trace(model)
    was_training = model.training
    model.eval()
    shapes = _Shapes(gm)
    try:  # ShapeProp prints the failing node's traceback to stderr itself; the error below says it in one line
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            shapes.propagate(torch.zeros(1, *input_size))
    except Exception as e:
        walker = _Walker(gm, input_size)
        for node in gm.graph.nodes:  # a layer the table does not cover may be why it fails: name that first
            walker._refuse(node)
        while e.__cause__ is not None:  # ShapeProp wraps the layer's own error
            e = e.__cause__
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f" (at layer '{walker._name(shapes.current)}')" if shapes.current is not None else ""
        raise ReceptiveFieldError(
            f"{type(model).__name__} does not run on an input of {input_size}{where}: {cause}") from None
    finally:
        model.train(was_training)
    return _Walker(gm, input_size).walk()


class _Walker:
    def __init__(self, gm: fx.GraphModule, input_size):
        self.gm, self.input_size = gm, input_size
        self.modules = dict(gm.named_modules())
        self.geo: dict[fx.Node, Geometry] = {}
        self.flat: dict[fx.Node, Geometry] = {}  # flattened maps: the geometry they were flattened from
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def walk(self) -> RFTable:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                h, w = self.input_size[1:]
                self.geo[node] = Geometry((h, w), (1, 1), (1, 1))
            elif node.op in ("call_module", "call_function", "call_method"):
                self._visit(node)
        return RFTable(self.rows, self.input_size, self.notes)

    # --- helpers ---
    def _inputs(self, node) -> list[fx.Node]:
        found = []
        for a in [*node.args, *node.kwargs.values()]:
            for n in a if isinstance(a, (list, tuple)) else [a]:
                if isinstance(n, fx.Node) and (n in self.geo or n in self.flat):
                    found.append(n)
        return found

    @staticmethod
    def _shape(node):
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _name(self, node) -> str:
        if node.op == "call_module":
            return str(node.target)
        target = getattr(node.target, "__name__", str(node.target))
        return f"{target} ({node.name})"

    def _row(self, node, kind, g_in, kernel, stride, padding, dilation, ceil_mode=False, n_out=None):
        g_out = _apply(g_in, kernel, stride, padding, dilation, ceil_mode)
        if n_out is not None:  # adaptive pooling: the size it was asked for, whatever the windows' widths
            g_out = Geometry(tuple(n_out), g_out.r, g_out.j)
        shape = self._shape(node)
        if shape is not None and len(shape) == 4 and tuple(shape[2:]) != g_out.n:
            raise ReceptiveFieldError(
                f"{self._name(node)}: the formulas give a {g_out.n} map but the model produces "
                f"{tuple(shape[2:])}; this layer's geometry is not understood, so no table is given"
            )
        self.rows.append(Row(self._name(node), kind, g_in.n, g_in.r, g_in.j, padding, kernel, stride,
                             dilation, g_out.n, g_out.r, g_out.j))
        self.geo[node] = g_out

    def _merge(self, node, parents):
        gs = [self.geo[p] for p in parents if p in self.geo]
        js = {g.j for g in gs}
        if len(js) > 1:
            self.notes.append(f"{self._name(node)} merges paths with different jumps {sorted(js)}; "
                              "the largest receptive field and jump are carried on")
        r = tuple(max(g.r[a] for g in gs) for a in range(2))
        j = tuple(max(g.j[a] for g in gs) for a in range(2))
        shape = self._shape(node)
        n = tuple(shape[2:]) if shape is not None and len(shape) == 4 else gs[0].n
        self.geo[node] = Geometry(n, r, j)

    def _refuse(self, node) -> nn.Module | None:
        """The node's module, after refusing by name a layer whose geometry the walker does not model."""
        module = self.modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, REFUSED_MODULES) or (node.op != "call_module" and node.target in REFUSED_FUNCTIONS):
            what = type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target))
            raise ReceptiveFieldError(
                f"{self._name(node)}: {what} is not a layer the receptive-field table covers (it covers 2-d "
                "convolutions, max and average pooling, adaptive pooling and GAP, Linear after a flatten, "
                "element-wise layers, add and cat); no table is given rather than a wrong one")
        return module

    # --- one node ---
    def _visit(self, node):
        parents = self._inputs(node)
        if not parents:
            return  # a constant, a size, a parameter: no geometry
        module = self._refuse(node)
        if self._shape(node) is None and node.meta.get("tensor_meta") is None and node.op == "call_method" \
                and node.target in ("size", "dim", "numel"):
            return  # x.size(0) and kin give numbers, not maps
        main = parents[0]
        if main in self.flat and main not in self.geo:
            self._after_flatten(node, module, main)
            return
        g = self.geo[main]
        if isinstance(module, nn.Conv2d):
            k, d = _pair(module.kernel_size), _pair(module.dilation)
            self._row(node, "conv", g, k, _pair(module.stride), _conv_padding(module.padding, k, d), d)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(module.kernel_size)
            s = _pair(module.stride or module.kernel_size)
            d = _pair(getattr(module, "dilation", 1))
            self._row(node, "pool", g, k, s, _pair(module.padding), d, module.ceil_mode)
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            k, s, notes = _adaptive(g, module.output_size)
            self.notes += notes
            self._row(node, "gap" if self._shape(node)[2:] == (1, 1) else "adaptive pool", g, k, s, (0, 0), (1, 1),
                      n_out=tuple(self._shape(node)[2:]))
        elif node.op == "call_function" and node.target in POOLS:
            a = self._args(node, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"))
            k = _pair(a["kernel_size"])
            s = _pair(a.get("stride") or a["kernel_size"])
            self._row(node, "pool", g, k, s, _pair(a.get("padding", 0)), _pair(a.get("dilation", 1)),
                      bool(a.get("ceil_mode", False)))
        elif node.op == "call_function" and node.target in ADAPTIVE:
            a = self._args(node, ("input", "output_size"))
            k, s, notes = _adaptive(g, a["output_size"])
            self.notes += notes
            self._row(node, "gap" if self._shape(node)[2:] == (1, 1) else "adaptive pool", g, k, s, (0, 0), (1, 1),
                      n_out=tuple(self._shape(node)[2:]))
        elif node.op == "call_function" and node.target in CONVS:
            a = self._args(node, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"))
            k = tuple(self._shape(a["weight"])[2:])
            d = _pair(a.get("dilation", 1))
            self._row(node, "conv", g, k, _pair(a.get("stride", 1)), _conv_padding(a.get("padding", 0), k, d), d)
        elif self._is_gap_mean(node):
            self._row(node, "gap", g, g.n, g.n, (0, 0), (1, 1))
        elif node.op != "call_module" and node.target in MERGES and sum(p in self.geo for p in parents) > 1:
            self._merge(node, parents)
        elif self._flattens(node, module):
            self.flat[node] = g
        elif isinstance(module, PASS_THROUGH) or self._keeps_map(node, g):
            self.geo[node] = g
        else:
            what = type(module).__name__ if module is not None else self._name(node)
            raise ReceptiveFieldError(
                f"{self._name(node)}: {what} changes the feature map in a way the receptive-field "
                "calculation does not cover (supported: Conv2d, Max/AvgPool2d, adaptive pooling, "
                "global average pooling, Linear after flatten, element-wise layers, add and cat)"
            )

    def _args(self, node, names) -> dict:
        a = dict(zip(names, node.args))
        a.update(node.kwargs)
        return a

    def _is_gap_mean(self, node) -> bool:
        if node.target not in ("mean", torch.mean, "amax", torch.amax):
            return False
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = {d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])} if dims is not None else set()
        return dims == {2, 3}

    def _flattens(self, node, module) -> bool:
        shape = self._shape(node)
        return shape is not None and len(shape) < 4 and (
            isinstance(module, nn.Flatten) or node.target in (torch.flatten, "flatten", "view", "reshape", "squeeze"))

    def _keeps_map(self, node, g) -> bool:
        """Element-wise functions (relu, dropout, ...) leave a 4-d map the same size."""
        shape = self._shape(node)
        if shape is None or len(shape) != 4 or tuple(shape[2:]) != g.n:
            return False
        return node.op in ("call_function", "call_method")

    def _after_flatten(self, node, module, main):
        g = self.flat[main]
        if isinstance(module, nn.Linear) or (node.op == "call_function" and node.target is F.linear):
            # A fully connected layer sees the whole flattened map: a conv with kernel n_in, no padding.
            self._row(node, "fc", g, g.n, (1, 1), (0, 0), (1, 1))
            self.flat[node] = self.geo.pop(node)
        else:
            self.flat[node] = g
