"""A record tied to its evidence: the executed notebook it came from.

A metrics file alone can be edited; the executed notebook beside it holds what
the run printed while it trained. `kit check` accepts a record only where it
agrees with that notebook: every epoch line the Trainer printed (run by run,
at the precision printed, and no printed run left out), the line kit.setup
printed (a smoke run, the machine and versions), and the parameters as
papermill injected them (a value that differs from the notebook's own is named).
"""
from __future__ import annotations

import ast
import re

from kit.record import Record

LINE = re.compile(r"^(?:(?P<name>.+?) · )?epoch\s+(?P<epoch>\d+)\s+train loss (?P<train_loss>\S+) acc\s+(?P<train_acc>\S+)%"
                  r"\s+test loss (?P<test_loss>\S+) acc\s+(?P<test_acc>\S+)%\s+lr (?P<lr>\S+)\s+(?P<seconds>\S+)s\s*$")
PRINTED = {"train_loss": "{:.4f}", "train_acc": "{:.2f}", "test_loss": "{:.4f}", "test_acc": "{:.2f}", "lr": "{:.3g}",
           "seconds": "{:.1f}"}


def printed_lines(nb) -> list[str]:
    """Every line a notebook's code cells printed to stdout, in order, stripped."""
    return [line.strip() for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stdout"
            for line in "".join(o.get("text", "")).splitlines()]


def rf_cells(nb) -> list:
    """The code cells that work out a receptive-field table (they call kit.rf.receptive_field)."""
    return [c for c in nb.cells if c.cell_type == "code" and "receptive_field(" in c.source]


def rf_table_problem(nb, ran=None) -> str | None:
    """Why a step does not show its receptive-field table, or None where it does: a cell must work it out from the
    model, and where the notebook ran (`ran`: the executed copy), print or display it."""
    from kit.rf import shows_table

    def text(o) -> str:
        return "".join(o.get("text", "")) + "".join(
            "".join(v) if isinstance(v, list) else str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    if not rf_cells(nb):
        return "no receptive-field table: add a cell with kit.rf.receptive_field(model, input_size)"
    if ran is not None and not any(shows_table(text(o)) for c in rf_cells(ran) for o in c.get("outputs", [])):
        return "the receptive-field cell showed no table when the notebook ran; end the cell with the call, or print it"
    return None


def printed_epochs(nb) -> list[dict]:
    """Every epoch line a notebook's code cells printed, in order."""
    return [m.groupdict() for line in printed_lines(nb) if (m := LINE.match(line))]


def _blocks(lines: list[dict]) -> dict[str, list[list[dict]]]:
    """Lines by the name they carry; each name's lines split into runs where the epoch starts again at 1."""
    out: dict[str, list[list[dict]]] = {}
    for line in lines:
        runs = out.setdefault(line["name"] or "", [])
        if not runs or int(line["epoch"]) <= int(runs[-1][-1]["epoch"]):
            runs.append([])
        runs[-1].append(line)
    return out


def check_epoch_lines(nb, record: Record) -> list[tuple[str, str]]:
    """Each run's history against the epoch lines the notebook printed for it."""
    blocks = _blocks(printed_epochs(nb))
    used: dict[str, int] = {}
    out = []
    order = sorted(record.runs, key=lambda r: r.settings.get("fit_order", 0))
    for run in order:
        name = run.settings.get("printed_name", run.name if run.name in blocks else "")
        i = used.get(name, 0)
        candidates = blocks.get(name, [])
        label = f"run '{run.name}': " if run.name else ""
        if i >= len(candidates):
            out.append(("evidence/epoch-lines", f"{label}the notebook printed no epoch lines for it: the record "
                                                "cannot be checked against the run (train with verbose=True)"))
            continue
        used[name] = i + 1
        lines = candidates[i]
        if len(lines) != len(run.history):
            out.append(("evidence/epoch-lines", f"{label}the notebook printed {len(lines)} epoch(s); the record holds "
                                                f"{len(run.history)}"))
            continue
        for line, epoch in zip(lines, run.history.epochs):
            for key, fmt in PRINTED.items():
                if line[key] != fmt.format(getattr(epoch, key)).strip():
                    what = key.replace("_", " ")
                    out.append(("evidence/epoch-lines", f"{label}epoch {epoch.epoch}: the notebook printed {what} "
                                                        f"{line[key]}, the record says {fmt.format(getattr(epoch, key))}"))
                    break
            else:
                continue
            break
    for name, runs in blocks.items():  # a run the notebook printed but the record leaves out (or lost)
        for lines in runs[used.get(name, 0):]:
            label = f"'{name} · '" if name else "no name"
            out.append(("evidence/epoch-lines", f"the notebook printed {len(lines)} epoch line(s) (with {label}) of a "
                                                "run the record does not hold: every Trainer fitted must be recorded"))
    return out


SETUP = re.compile(r"^(?P<smoke>smoke run: )?\d+ epochs?\b.*?; seed -?\d+; (?P<environment>.+)$")


def check_setup(nb, record: Record) -> list[tuple[str, str]]:
    """The record against the line kit.setup printed: a smoke run is recorded as one, on the machine it named."""
    lines = [m for line in printed_lines(nb) if (m := SETUP.match(line))]
    if not lines:
        return []  # a notebook that does not call kit.setup
    printed = lines[-1]
    out = []
    if printed["smoke"] and not record.quick:
        out.append(("evidence/quick", "the notebook printed that it made a smoke run, but the record says it is a "
                                      "full run; a smoke run confirms no claim"))
    env = record.environment
    if env is not None:  # the parts every version of the setup line has printed
        parts = [f"{env.device_name} ({env.device})", f"{env.threads} CPU thread", f"torch {env.torch}",
                 f"Python {env.python}"]
        if missing := [x for x in parts if x not in printed["environment"]]:
            out.append(("evidence/environment", f"the notebook printed that it ran on {printed['environment']!r}; "
                                                f"the record says {', '.join(missing)}"))
    return out


def assigned(source: str) -> dict:
    """name -> value of the literal assignments in a cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


def check_parameters(nb, record: Record | None = None) -> list[tuple[str, str]]:
    """The parameters papermill injected must be the notebook's own (the device and smoke-run switch aside)."""
    tagged = lambda tag: next((c.source for c in nb.cells if tag in c.metadata.get("tags", [])), None)  # noqa: E731
    injected, own = tagged("injected-parameters"), tagged("parameters")
    if injected is None or own is None:
        return []
    given, defaults = assigned(injected), assigned(own)
    changed = [f"{k} = {v!r} (the notebook's own: {defaults.get(k, 'none')!r})" for k, v in given.items()
               if k not in ("device", "quick") and defaults.get(k, object()) != v]
    if given.get("quick") is True and record is not None and not record.quick:
        changed.append("quick = True (a smoke run), but the record says it is a full run")
    if changed:
        return [("evidence/parameters", "the report ran with other parameters than the notebook's: " + "; ".join(changed)
                 + "; run it as it is written")]
    return []
