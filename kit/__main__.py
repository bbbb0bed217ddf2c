"""The command line: `python -m kit COMMAND ...` (see `python -m kit --help`)."""
from __future__ import annotations

import argparse
import sys


def _data(args) -> int:
    from kit import data

    if args.action == "fetch":
        folder = data.fetch(args.name, args.root)
        print(f"{args.name}: ready and verified in {folder}")
    else:  # stats
        train = data.load(args.name, "train", args.root)
        print(data.stats(train))
    return 0


def _parameter(text: str):
    """A -p value as Python reads it (1, 0.1, True), else as a string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _run(args) -> int:

    from kit.run import find_notebooks, out_folder, refresh_text, run

    if args.text_only:
        failed = []
        for notebook, sub in find_notebooks(args.notebooks):
            try:  # one notebook without a report (or a writable file) does not stop the others
                report, said = refresh_text(notebook, out_folder(notebook, sub, args.out, args.quick))
                print(f"refreshed the text of {report}: {said}")
            except (OSError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                failed.append(notebook.name)
        if failed:
            print(f"{len(failed)} notebook(s) not refreshed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    params = {name: _parameter(value) for name, value in args.parameter}
    return run(args.notebooks, args.out, quick=args.quick, device=args.device, timeout=args.timeout,
               start_timeout=args.start_timeout, jobs=args.jobs, fail_fast=args.fail_fast,
               changed_only=args.changed_only, parameters=params, threads=args.threads)


def _rf(args) -> int:
    import importlib
    import inspect

    from torch import nn

    from kit.rf import ReceptiveFieldError, receptive_field

    module_name, _, attr = args.model.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model must be MODULE:ATTR (e.g. torchvision.models:vgg16), got {args.model!r}")
    try:
        size = tuple(int(v) for v in args.input.split(","))
    except ValueError:
        size = ()
    if len(size) != 3:
        raise ValueError(f"--input must be C,H,W (e.g. 1,28,28), got {args.input!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except AttributeError:
        raise ValueError(f"cannot load {args.model}: module {module_name} has no {attr!r}") from None
    except Exception as e:  # the module itself may fail on import: say so, with its own error
        raise ValueError(f"cannot load {args.model}: importing {module_name} failed with "
                         f"{type(e).__name__}: {e}") from None
    try:
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    except TypeError as e:
        raise ValueError(f"{args.model} cannot be built without arguments ({e}); give a factory that takes none, "
                         f"e.g. a function in your module that returns {attr}(...) with its arguments") from None
    if not isinstance(model, nn.Module):
        kind = "class" if inspect.isclass(factory) else type(factory).__name__
        raise ValueError(f"{args.model} ({kind}) did not give a torch.nn.Module; "
                         "ATTR must be a model class or a factory that takes no arguments")
    try:
        table = receptive_field(model, size)
    except ReceptiveFieldError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table.to_markdown())
    return 0


def _bench(args) -> int:
    from pathlib import Path

    from kit.bench import EPOCHS, RESULTS, bench, check_lengths

    epochs, limit = (1, 2_000) if args.quick else (args.epochs, args.limit)
    check_lengths(epochs, limit)  # before anything is said of recording them
    paths = [p.strip() for p in args.paths.split(",")] if args.paths else None
    results = None if (args.no_save or args.quick) else Path(args.out or RESULTS)
    if args.out is None and results is not None and (epochs != EPOCHS or limit):
        results = None
        print(f"(not recorded: {RESULTS.name} keeps the full-length case, {EPOCHS} epochs on every image; "
              "give --out FILE to keep these figures)")
    bench(args.device, epochs, paths, args.seed, limit, results=results)
    return 0


def _assign(args) -> int:
    from kit.assign import assign

    problems = assign(args.solution, args.out, check=args.check)
    for p in problems:
        print(p)
    if not args.check:
        print(f"wrote the student's folder for {args.solution}")
    elif not problems:
        print(f"the student's folder is what `python -m kit assign {args.solution}` generates")
    return 1 if problems else 0


def _grade(args) -> int:
    from kit.grade import grade, markdown

    rows, out = grade(args.submission, device=args.device, out=args.out, quick=args.quick, tolerance=args.tolerance)
    print(markdown(rows, __import__("pathlib").Path(args.submission)))
    print(f"the fresh run and the sheet (grade.md, grade.csv) are in {out}")
    return 0 if all(r.held for r in rows) else 1


def _site(args) -> int:
    from kit.site import SiteError, build, serve_hint

    try:
        index = build(args.out)
    except SiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(serve_hint(index))
    return 0


def _check(args) -> int:
    from kit.check import check

    violations = check(args.paths)
    for v in violations:
        print(v)
    return 1 if violations else 0


def build_parser() -> argparse.ArgumentParser:
    from kit.data import NAMES

    parser = argparse.ArgumentParser(prog="python -m kit", description="Drill-Down Kit command line")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("data", help="fetch and verify a data set, or print its statistics")
    d.add_argument("action", choices=("fetch", "stats"))
    d.add_argument("name", choices=NAMES)
    d.add_argument("--root", help="data folder (default: $KIT_DATA, else ~/.cache/drill-down-kit)")
    d.set_defaults(run=_data)

    f = commands.add_parser("rf", help="print a model's receptive-field table as Markdown")
    f.add_argument("model", help="MODULE:ATTR, a model class or a factory that takes no arguments")
    f.add_argument("--input", required=True, help="input shape C,H,W, e.g. 1,28,28")
    f.set_defaults(run=_rf)

    b = commands.add_parser("bench", help="time the training paths (classic, device, CUDA graph, compiled) side by side")
    b.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    b.add_argument("--epochs", type=int, default=15,
                   help="epochs per path (default: 15, the solution's full run; only that case is recorded unless "
                        "--out is given)")
    b.add_argument("--paths", help="comma-separated paths to time (default: all that the device has), from: "
                                   "classic, device, device NCHW, device channels_last, device + CUDA graph, "
                                   "device + CUDA graph (fp32), device + CUDA graph (fp32 NCHW), device + compile, "
                                   "device + compile + CUDA graph")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--limit", type=int, help="use only the first LIMIT training images")
    b.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images, nothing recorded: does it run?")
    b.add_argument("--out", help="where to record the figures (default: benchmarks/RESULTS.md)")
    b.add_argument("--no-save", action="store_true", help="print only")
    b.set_defaults(run=_bench)

    c = commands.add_parser("check", help="validate notebooks: sections, budget, claims, sanity, assignment rules")
    c.add_argument("paths", nargs="+", help="notebooks or folders (source or executed)")
    c.set_defaults(run=_check)

    a = commands.add_parser("assign", help="generate an assignment's student folder from its solution notebooks")
    a.add_argument("solution", help="the solution folder (its notebooks mark the student's code with # BEGIN SOLUTION)")
    a.add_argument("--out", help="the student folder (default: template/ beside the solution folder)")
    a.add_argument("--check", action="store_true", help="write nothing; exit 1 where the student folder differs")
    a.set_defaults(run=_assign)

    g = commands.add_parser("grade", help="re-run a submission and judge every rule and claim against the fresh run")
    g.add_argument("submission", help="the submission's folder (a filled-in copy of an assignment's template)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    g.add_argument("--out", help="where the fresh run and the sheet go (default: grades/SUBMISSION_NAME)")
    g.add_argument("--quick", action="store_true", help="smoke runs: judge structure, steps and sizes, not accuracies")
    g.add_argument("--tolerance", type=float,
                   help="accuracy points a claim may differ by (default: 0 where the submission's own run came from "
                        "the same kind of device, threads and versions, else 0.15)")
    g.set_defaults(run=_grade)

    s = commands.add_parser("site", help="build the course's website from the executed notebooks (offline)")
    s.add_argument("--out", default="site", help="where the site goes (default: site/)")
    s.set_defaults(run=_site)

    r = commands.add_parser("run", help="execute notebooks headlessly with papermill")
    r.add_argument("notebooks", nargs="*",
                   help="notebooks or folders, searched with their sub-folders but not `template` ones "
                        "(default: notebooks/)")
    r.add_argument("--quick", action="store_true", help="a smoke run: fewer epochs and images")
    r.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    r.add_argument("--out", help="where executed notebooks, metrics and results tables go, sub-folders mirrored "
                                 "(default: reports/ beside notebooks/, in the notebook's own sub-folders)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="inject a parameter into every notebook")
    r.add_argument("--timeout", type=int,
                   help="seconds one notebook may run (default: none for a full run that has no earlier run on this "
                        "kind of device, else 3x that run's time plus 10 minutes; 900 for a smoke run)")
    r.add_argument("--start-timeout", type=int, default=120, help="seconds a kernel may take to start (default: 120)")
    r.add_argument("-j", "--jobs", type=int,
                   help="notebooks run at once (default: one per CPU core on a CPU, 4 on a GPU)")
    r.add_argument("--threads", type=int, default=1,
                   help="CPU threads for each notebook (default: 1, so that a rerun gives the same numbers)")
    r.add_argument("--changed-only", action="store_true",
                   help="skip notebooks whose notebook, parameters and kit source are unchanged since their last good run")
    r.add_argument("--text-only", action="store_true",
                   help="run nothing: copy the notebooks' Markdown (Target, Result, Analysis) into their reports in --out")
    r.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    r.set_defaults(run=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from kit.data import DataError
    from kit.files import BatchLockedError

    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError, BatchLockedError, PermissionError, IsADirectoryError,
            NotADirectoryError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # not a user's mistake we know of: say what it was, and how to see more
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {e}\n(run again with --debug to see where it happened)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
