"""The results table of a batch run: reports/README.md, its JSON twin, and one comparing figure.

Everything is read back from what the runs wrote (each notebook's metrics and
run record), so the table can only show measured numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

from kit.files import write_text

COLUMNS = ("notebook", "parameters", "best train acc (epoch)", "best test acc (epoch)", "last 3 test acc", "epochs",
           "device", "training", "notebook", "status")


def _read(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def collect(out: Path) -> list[dict]:
    """One row per run of every notebook that has a report in `out` or failed its last run."""
    from kit.record import Record, RecordError

    stems = sorted({p.name[: -len(".run.json")] for p in out.glob("*.run.json")}
                   | {p.name[: -len(".failed.json")] for p in out.glob("*.failed.json")})
    rows = []
    for stem in stems:
        run, failed = _read(out / f"{stem}.run.json"), _read(out / f"{stem}.failed.json")
        record, problem = None, ""
        if (out / f"{stem}.metrics.json").exists():
            try:
                record = Record.load(out / f"{stem}.metrics.json")
            except RecordError as e:
                problem = f"record unreadable: {e}"
        status = ("failed" + (" (the last good report is kept)" if run else "")) if failed else ("ok" if run else "—")
        error = (failed or {}).get("error", "").splitlines()[0] if failed else problem
        env = record.environment if record else None
        # a record's flag where it has one (the numbers shown are its), else the failed run's own
        quick = record.quick if record else bool((failed or {}).get("quick"))
        common = {"notebook": f"{stem}.ipynb", "quick": quick, "status": status, "error": error,
                  "device": env.device_name if env else (run or {}).get("device"),
                  "notebook_seconds": (run or {}).get("seconds"),
                  "environment": env.describe() if env else None}
        if record is None:
            rows.append({**common, "run": None, "data": None, "parameters": None, "best_train_acc": None,
                         "best_train_epoch": None, "best_test_acc": None, "best_test_epoch": None,
                         "last_test_acc": None, "epochs": None, "seconds": None, "history": []})
            continue
        for r in record.reported:  # a notebook that trains several runs (seeds, norms, teacher and student): a row each
            d = r.derived()
            rows.append({**common, "run": r.name or None, "data": r.data, "parameters": r.parameters,
                         **{k: d[k] for k in ("best_train_acc", "best_train_epoch", "best_test_acc", "best_test_epoch",
                                              "last_test_acc", "epochs")},
                         "seconds": r.seconds, "history": r.history.to_list()})
    return rows


def _cell(v, fmt="{}") -> str:
    return "—" if v is None else fmt.format(v)


def markdown(rows: list[dict], figure: str | None, others: list[str] = ()) -> str:
    lines = ["# Results", "",
             "Written by `python -m kit run` from the record each notebook wrote; nothing here is typed by hand.",
             "*training* is a run's own training and testing time; *notebook* the whole notebook's, from start to end.",
             ""]
    if any(r["quick"] for r in rows):
        lines += ["**Some rows come from quick (smoke) runs, marked *quick* with the data they ran on: they are not "
                  "results.**", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    seen = set()
    for r in rows:
        train = None if r["best_train_acc"] is None else f"{r['best_train_acc']:.2f}% ({r['best_train_epoch']})"
        best = None if r["best_test_acc"] is None else f"{r['best_test_acc']:.2f}% ({r['best_test_epoch']})"
        last = None if not r["last_test_acc"] else ", ".join(f"{a:.2f}" for a in r["last_test_acc"])
        quick = f" *quick: {r['data']}*" if r["quick"] and r["data"] else " *quick*" if r["quick"] else ""
        run = f" · {r['run']}" if r["run"] else ""
        first = r["notebook"] not in seen
        seen.add(r["notebook"])
        name = f"[{r['notebook']}]({r['notebook']}){run}{quick}"  # a smoke run says what data it ran on
        lines.append("| " + " | ".join([
            name, _cell(r["parameters"], "{:,}"), _cell(train), _cell(best), _cell(last),
            _cell(r["epochs"]), _cell(r["device"]), _cell(r["seconds"], "{:.0f} s"),
            _cell(r["notebook_seconds"] if first else None, "{:.0f} s"),
            r["status"] + (f": {r['error']}" if r["error"] else ""),
        ]) + " |")
    environments = sorted({r["environment"] for r in rows if r["environment"]})
    if environments:
        lines += ["", "Run on: " + "; ".join(environments) + "."]
    if figure:
        lines += ["", f"![test accuracy per epoch, and parameters against best test accuracy]({figure})"]
    if others:
        lines += ["", "More results, in folders below this one: "
                  + ", ".join(f"[{folder}/]({folder}/README.md)" for folder in others) + "."]
    return "\n".join(lines) + "\n"


def _label(row: dict, short: bool = False) -> str:
    name = row["notebook"].removesuffix(".ipynb")
    name = name.split("_")[0] if short else name  # "01" for 01_setup on the crowded scatter
    return f"{name} · {row['run']}" if row["run"] else name


def figure(rows: list[dict], path: Path):
    """Test accuracy per epoch for every notebook, and parameters against best test accuracy."""
    import matplotlib.pyplot as plt

    from kit.plots import save

    fig, (curves, budget) = plt.subplots(1, 2, figsize=(12, 4.2))
    for r in rows:
        if r["history"]:
            curves.plot([e["epoch"] for e in r["history"]], [e["test_acc"] for e in r["history"]], "o-",
                        ms=3, label=_label(r))
        if r["parameters"] is not None and r["best_test_acc"] is not None:
            budget.scatter(r["parameters"], r["best_test_acc"])
            budget.annotate(_label(r, short=True), (r["parameters"], r["best_test_acc"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
    curves.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy per epoch")
    curves.grid(alpha=0.3)
    if curves.lines:
        curves.legend(fontsize=7)
    budget.set_ylim(top=100.2)  # accuracy stops at 100%
    budget.set(xscale="log", xlabel="parameters", ylabel="best test accuracy (%)", title="parameters vs best test accuracy")
    budget.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def write_report(out: Path) -> list[dict]:
    """Rebuild README.md, results.json and steps.png in `out` from the records there; the README links the
    tables of the folders below."""
    rows = collect(out)
    fig_name = None
    if any(r["history"] for r in rows):
        fig_name = "steps.png"
        figure(rows, out / fig_name)
    others = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/**/results.json")
                    if not any(part.startswith(".") for part in p.relative_to(out).parts))
    for name, text in (("README.md", markdown(rows, fig_name, others)),
                       ("results.json", json.dumps([{k: v for k, v in r.items() if k != "history"} for r in rows],
                                                   indent=1))):
        write_text(out / name, text)
    return rows
