"""Time the training paths side by side: `python -m kit bench`.

The full-length case: the reference solution's step-4 model (read from its notebook's
`model` cell) with step 4's recipe (batch 128, random affine augmentation, one-cycle
schedule) for its 15 epochs, on each path in turn, in one process, on one device:

- classic: torchvision's DataLoader, PIL images transformed one at a time in 2 worker
  processes (what a student's notebook does), eager training step;
- device: the whole data set on the device, augmented a batch at a time there, eager step, in
  the default memory format (kit.train.default_channels_last);
- device NCHW, device channels_last: the default step (a CUDA graph on CUDA) in the memory
  format that is not the default here: does the default pay?
- device + CUDA graph: the step captured once and replayed (CUDA only; the default there);
- device + CUDA graph (fp32): the same without bf16 autocast: on a model this small, do the
  casts autocast adds cost more than bf16 saves?
- device + CUDA graph (fp32 NCHW): and in NCHW too: in fp32, cuDNN converts channels_last maps for some
  of its kernels (the CUDA checks' profile), and in bf16 it pads their few channels for the tensor cores;
- device + compile (torch.compile): the model compiled (on CUDA in its CUDA-graph mode), its
  one-time cost counted in the first epoch and in the total, with caches as cold as a first run's;
- device + compile + CUDA graph: the model compiled for fused kernels only, and the whole step captured in
  the trainer's own graph (CUDA only): a captured step replays some 250 small kernels, and fusing them is
  what is left to gain once the host no longer launches them one by one.

Every path starts from the same initial weights. On CUDA every uncompiled device path first trains a few
batches untimed, so that no row pays for the process's first use of a kernel. The ratios printed are measured,
never assumed, with each path's test accuracy beside its time. The figures are also written to
benchmarks/RESULTS.md, in a section of their own per device (a CPU, each GPU model).
"""
from __future__ import annotations

import ast
import json
import os
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from kit.callbacks import OneCycle
from kit.data import load, stats
from kit.files import write_text
from kit.loaders import make_loaders
from kit.record import device_name
from kit.train import Trainer, default_channels_last, pick_device, set_seed
from kit.transforms import Augment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SOLUTION = ROOT / "notebooks" / "assignments" / "mnist_4_steps" / "solution" / "step4.ipynb"
# Step 4's recipe; tests/test_bench.py checks that the solution notebook still uses it.
AUGMENT = Augment(rotation=7)
BATCH = 128
EPOCHS = 15  # the solution's full run: RESULTS.md keeps this case only
PATHS = {
    "classic": dict(path="classic", graph=False),
    "device": dict(path="device", graph=False),
    "device NCHW": dict(path="device", graph=None, channels_last=False),  # the default step, NCHW
    "device channels_last": dict(path="device", graph=None, channels_last=True),  # the default step, channels_last
    "device + CUDA graph": dict(path="device", graph=True),
    "device + CUDA graph (fp32)": dict(path="device", graph=True, amp=False),
    "device + CUDA graph (fp32 NCHW)": dict(path="device", graph=True, amp=False, channels_last=False),
    "device + compile": dict(path="device", graph=False, compile=True),
    "device + compile + CUDA graph": dict(path="device", graph=True, compile=True),
}


@dataclass(frozen=True)
class Timing:
    path: str
    setup_seconds: float  # loaders and trainer built (compilation happens in the first epoch)
    first_epoch: float  # training seconds of epoch 1 (one-time costs included)
    train_seconds: float  # training seconds of all epochs
    test_seconds: float  # testing seconds of all epochs
    images_per_second: float  # training images over train_seconds
    test_accs: tuple[float, ...]  # per epoch
    settings: str = ""  # what the trainer resolved (precision, memory format, step): a row's name leans on defaults

    @property
    def total(self) -> float:
        return self.setup_seconds + self.train_seconds + self.test_seconds


def solution_model() -> tuple[type[nn.Module], float]:
    """The step-4 model class and learning rate, from the solution notebook's `model` and `parameters` cells."""
    import nbformat

    import kit

    nb = nbformat.read(SOLUTION, as_version=4)
    model_cells = [c.source for c in nb.cells if "model" in c.metadata.get("tags", [])]
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    if not model_cells:
        raise ValueError(f"{SOLUTION} has no cell tagged `model`")
    lr = next(ast.literal_eval(node.value) for node in ast.parse(params).body
              if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "lr")
    namespace = {"torch": torch, "nn": nn, "kit": kit}
    exec(compile("\n".join(model_cells), str(SOLUTION), "exec"), namespace)  # our own reference notebook
    return type(namespace["model"]), lr


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def cold_compile():
    """A compiled path pays torch.compile's whole one-time cost, as a first run does: inductor's caches (and
    Triton's, inside them) point at a fresh folder, so no graph or kernel compiled by an earlier path or process
    is found."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    triton = os.environ.pop("TRITON_CACHE_DIR", None)  # else Triton keeps its own folder
    try:
        with tempfile.TemporaryDirectory(prefix="kit-bench-compile-") as folder, temporary_cache_dir(folder):
            yield
    finally:
        if triton is not None:
            os.environ["TRITON_CACHE_DIR"] = triton


def time_path(name: str, train_set, test_set, *, device: torch.device, epochs: int, seed: int, mean, std,
              net: type[nn.Module], lr: float) -> Timing:
    options = dict(PATHS[name])
    path = options.pop("path")
    if options["graph"] is None:  # the default step, named here: KIT_GRAPH=0 (for notebooks) must not change a row
        options["graph"] = device.type == "cuda"
    _sync(device)
    start = time.perf_counter()
    set_seed(seed)
    model = net()
    train, test = make_loaders((train_set, test_set), path=path, batch_size=BATCH, device=device, seed=seed,
                               mean=mean, std=std, augment=AUGMENT)
    trainer = Trainer(model, train, test, epochs=epochs, lr=lr, scheduler=OneCycle(max_lr=lr), verbose=False,
                      progress=False, **options)
    _sync(device)
    setup = time.perf_counter() - start
    train_times, test_time, accs = [], 0.0, []
    for epoch in range(1, epochs + 1):
        _sync(device)
        a = time.perf_counter()
        trainer.train_epoch(epoch)
        _sync(device)
        b = time.perf_counter()
        _, acc = trainer.test_epoch(epoch)
        _sync(device)
        train_times.append(b - a)
        test_time += time.perf_counter() - b
        accs.append(acc)
        for c in trainer.callbacks:
            c.after_epoch(trainer, 0.0)
    return Timing(name, setup, train_times[0], sum(train_times), test_time,
                  len(train_set) * epochs / sum(train_times), tuple(accs), settings(trainer))


def settings(trainer: Trainer) -> str:
    """The choices a trainer resolved that change its speed, in words: 'bf16 · channels_last · CUDA graph'."""
    precision = str(trainer.amp_dtype).replace("torch.bfloat16", "bf16") if trainer.amp_dtype else "fp32"
    step = " + ".join(w for w, on in (("torch.compile", trainer.compiled), ("CUDA graph", trainer.graph)) if on)
    step = step or "eager"
    return f"{precision} · {'channels_last' if trainer.channels_last else 'NCHW'} · {step}"


def default_paths(device: torch.device) -> list[str]:
    if device.type == "cuda":
        # the default step, then the classic path its ratio is taken against in the same process (2 to 2.5
        # minutes on an H200), then the other captured steps; the eager and compiled paths last: a run cut short
        # by a time limit keeps what matters; a row measured before stays until a later run measures it again
        return ["device + CUDA graph", "classic", "device + compile + CUDA graph", "device + CUDA graph (fp32)",
                "device + CUDA graph (fp32 NCHW)", "device NCHW", "device", "device + compile"]
    other = "device NCHW" if default_channels_last(device) else "device channels_last"
    return ["classic", "device", other, "device + compile"]


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device_name(device)} (CUDA)"
    n = torch.get_num_threads()
    return f"CPU: {device_name(device)}, {n} thread{'s' * (n != 1)}, {os.cpu_count()} cores"


def check_lengths(epochs, limit) -> None:
    """Epochs and the image limit are whole numbers of at least 1 (no limit: None)."""
    for name, value in (("epochs", epochs), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")


def bench(device: str = "auto", epochs: int = EPOCHS, paths: list[str] | None = None, seed: int = 0,
          limit: int | None = None, root=None, results: Path | None = RESULTS) -> dict[str, Timing]:
    check_lengths(epochs, limit)
    if results is not None:
        _check_results(Path(results))  # before the timing, not after it
    device = pick_device(device)
    paths = paths or default_paths(device)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {unknown}; choose from {list(PATHS)}")
    if device.type != "cuda" and any(PATHS[p].get("graph") for p in paths):
        raise ValueError("the CUDA-graph paths need a CUDA device")
    _started["at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    net, lr = solution_model()
    train_set, test_set = load("mnist", "train", root), load("mnist", "test", root)
    if limit:
        train_set, test_set = train_set.subset(limit), test_set.subset(min(limit, len(test_set)))
    s = stats(train_set)
    where = describe(device)
    print(f"device: {where}; torch {torch.__version__}; the default memory format here: {_memory_format(device)}")
    print(f"the solution's step-4 model ({sum(p.numel() for p in net().parameters()):,} parameters) on "
          f"{len(train_set):,} MNIST images, batch {BATCH}, augmentation {_augment_words()}, one-cycle to lr {lr}, "
          f"{epochs} epoch{'s' * (epochs != 1)} a path\n")
    _warm_up(device, paths, train_set, test_set, seed=seed, mean=s.mean, std=s.std, net=net, lr=lr)
    header = (f"{'path':<26} {'train s':>8} {'1st epoch':>9} {'img/s':>9} {'x classic':>9} {'total s':>8}  "
              "test acc (last 3)")
    print(header)
    timings, failed = {}, []
    for name in paths:
        try:
            with cold_compile() if PATHS[name].get("compile") else nullcontext():
                t = timings[name] = time_path(name, train_set, test_set, device=device, epochs=epochs, seed=seed,
                                              mean=s.mean, std=s.std, net=net, lr=lr)
        except Exception as e:  # one broken path must not hide the others' figures
            print(f"{name:<26} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
            failed.append(name)
            continue
        ratio = (f"{t.images_per_second / timings['classic'].images_per_second:9.1f}" if "classic" in timings
                 else f"{'—':>9}")  # the ratios of paths timed before classic come at the end
        print(f"{name:<26} {t.train_seconds:8.2f} {t.first_epoch:9.2f} {t.images_per_second:9,.0f} {ratio} "
              f"{t.total:8.1f}  {', '.join(f'{a:.2f}' for a in t.test_accs[-3:])}  ({t.settings})", flush=True)
        if results is not None:  # after every path: a run cut short still leaves what it measured
            _write(results, where, timings, epochs, len(train_set), net, lr, device)
    if "classic" in timings:
        for name, t in timings.items():
            if name != "classic":
                print(f"{name} / classic training throughput: "
                      f"{t.images_per_second / timings['classic'].images_per_second:.2f}x")
    if results is not None and timings:
        print(f"written to {results}")
    if failed:
        raise ValueError(f"{len(failed)} of {len(paths)} paths failed: {', '.join(failed)} (see above)")
    return timings


def _warm_up(device: torch.device, paths: list[str], train_set, test_set, **options) -> None:
    """On CUDA, train every device path to be timed, but the compiled ones, for a few batches before any clock
    starts. A process loads each kernel on its first use (CUDA loads them lazily), so the path that came first
    paid for its own: on an H200 the first captured step's first epoch took 1.67 s (bf16) against 0.54 s for a
    later one (fp32). A compiled path keeps its one-time cost, which is what it is timed for."""
    if device.type != "cuda":
        return
    # 8 batches: past the trainer's eager warm-up steps and the capture, into the replays
    small = train_set.subset(min(8 * BATCH, len(train_set))), test_set.subset(min(BATCH, len(test_set)))
    for name in paths:
        if PATHS[name]["path"] == "device" and not PATHS[name].get("compile"):
            try:
                time_path(name, *small, device=device, epochs=1, **options)
            except Exception:  # noqa: BLE001 - its timed run says what is wrong, beside the others' figures
                pass


def _augment_words() -> str:
    parts = [f"turns of ±{AUGMENT.rotation:g}°" if AUGMENT.rotation else "",
             f"shifts up to {AUGMENT.translate:.0%}" if AUGMENT.translate else "",
             f"zooms {AUGMENT.scale[0]:g} to {AUGMENT.scale[1]:g}" if AUGMENT.scale != (1.0, 1.0) else ""]
    return "(" + ", ".join(p for p in parts if p) + ")" if any(parts) else "(none)"


def _row(t: Timing, when: str, case: str) -> dict:
    return {"path": t.path, "case": case, "train_seconds": round(t.train_seconds, 2), "first_epoch": round(t.first_epoch, 2),
            "test_seconds": round(t.test_seconds, 2), "total": round(t.total, 1),
            "images_per_second": round(t.images_per_second), "test_accs": [round(a, 2) for a in t.test_accs],
            "settings": t.settings, "measured": when}


def _section(where: str, info: dict) -> str:
    rows = info["rows"]
    classic = next((r for r in rows if r["path"] == "classic"), None)
    stamps = sorted({r["measured"] for r in rows})
    lines = []
    for r in rows:
        ratio = f"{r['images_per_second'] / classic['images_per_second']:.1f}×" if classic else "—"
        lines.append(f"| {r['path']} | {r.get('settings', '—')} | {r['train_seconds']:.2f} | {r['first_epoch']:.2f} | "
                     f"{r['test_seconds']:.2f} | {r['total']:.1f} | {r['images_per_second']:,} | {ratio} | "
                     f"{', '.join(f'{a:.2f}' for a in r['test_accs'][-3:])} | {r['measured']} |")
    note = ("" if len(stamps) == 1 else
            f"\nThe rows come from {len(stamps)} runs of `kit bench` (see *measured*); each run is one process, so "
            "ratios between rows of different runs compare separate processes on the same kind of device.\n")
    return (f"## {where}\n\n{info['what']}\n{note}\n"
            "| path | settings | train s | 1st epoch s | test s | total s | train img/s | × classic | test acc, last 3 "
            "| measured |\n|---|---|---:|---:|---:|---:|---:|---:|---|---|\n" + "\n".join(lines) + "\n")


def _memory_format(device: torch.device) -> str:
    return "channels_last" if default_channels_last(device) else "NCHW"


def _check_results(path: Path) -> None:
    twin = path.with_name("results.json")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; --out names the Markdown file to write (results.json goes beside it)")
    try:
        data = json.loads(twin.read_text()) if twin.exists() else {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{twin} is not a readable JSON file ({e}); move it, or give another --out") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "rows" in v for v in data.values()):
        raise ValueError(f"{twin} is not the figures of `python -m kit bench` (one section per device); move it, "
                         "or give another --out")


def _write(path: Path, where: str, timings: dict[str, Timing], epochs: int, n: int, net, lr: float,
           device: torch.device) -> None:
    """Record this run's rows in the device's section of RESULTS.md and its JSON twin (results.json beside it):
    a path measured again replaces its row; the other devices' sections, and rows of paths not measured now, stay."""
    twin = path.with_name("results.json")
    data = json.loads(twin.read_text()) if twin.exists() else {}
    when = _started.get("at") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = (f"The solution's step-4 model ({sum(p.numel() for p in net().parameters()):,} parameters) on {n:,} MNIST "
            f"training images, batch {BATCH}, augmentation {_augment_words()}, one-cycle to lr {lr}, {epochs} epochs per "
            f"path; torch {torch.__version__}; the default memory format here: {_memory_format(device)}.")
    info = data.setdefault(where, {"what": what, "rows": []})
    # a row measured on another case (model, recipe, epochs, torch) would stand under the wrong words: it goes
    stale = [r for r in info["rows"] if r.get("case", info["what"]) != what]
    if stale:
        print(f"{where}: {len(stale)} row(s) measured on another case dropped "
              f"({', '.join(r['path'] + ' of ' + r['measured'] for r in stale)})", flush=True)
    info["rows"] = [r for r in info["rows"] if r not in stale]
    info["what"] = what
    fresh = {name: _row(t, when, what) for name, t in timings.items()}
    info["rows"] = [fresh.pop(r["path"]) if r["path"] in fresh else r for r in info["rows"]] + list(fresh.values())
    order = list(PATHS)
    info["rows"].sort(key=lambda r: order.index(r["path"]) if r["path"] in order else len(order))
    write_text(twin, json.dumps(data, indent=1))
    head = ("# Benchmarks\n\nOne section per device, each written by `python -m kit bench` there (the figures are "
            "also in [results.json](results.json)).\n")
    write_text(path, head + "\n" + "\n".join(_section(w, data[w]) for w in sorted(data)))


_started: dict = {}  # the time this process's bench began: every row it writes carries it
