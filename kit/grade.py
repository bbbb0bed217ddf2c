"""`python -m kit grade SUBMISSION`: the TA's tool. Grading is re-running.

The submission's step notebooks are executed afresh into a folder of the
grade's own (on the GPU where there is one), then every rule and every claim
of each Result is judged against that fresh run, not against the records the
submission brought; the fresh record is itself held to the checker's rules
(evidence, the declared budget, the model the `model` cells build, every
Trainer fitted), since the student's code wrote it. The grade sheet has a row
per rule and claim: held or not, what was claimed, what was measured. It is
printed as Markdown and written as Markdown and CSV beside the fresh reports;
the exit status is 1 where any row does not hold.

A rerun repeats a run exactly only on the same kind of device with the same
thread count, library versions and speed settings (precision, memory format,
CUDA graph, compilation, the optimizer's code). Elsewhere, accuracies are allowed to differ
by a tolerance (and the epoch of a best accuracy is not judged); the sheet
says which, and how much.
"""
from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kit.files import read_notebook, write_text

TOLERANCE = 0.15  # accuracy points a rerun on another kind of device may differ by


@dataclass
class Row:
    step: str
    rule: str
    held: bool
    claimed: str = ""
    measured: str = ""
    note: str = ""


# the Result's rules beyond its claims, judged on a record the rerun can vouch for: every other number, and the
# words for where and how the run ran
BEYOND_CLAIMS = ("claims/untied", "claims/where", "claims/how")
# a Trainer's choices that change its numbers; "optimizer" is the update's code (a captured step's kit GraphSGD,
# or torch's fused SGD in records made before it)
SPEED_SETTINGS = ("amp", "channels_last", "graph", "compile", "optimizer")


def _same_environment(a, b) -> bool:
    keys = ("device_name", "threads", "torch", "numbers") + (("cpu_kernels",) if a and a.device == "cpu" else ())
    return a is not None and b is not None and all(getattr(a, k) == getattr(b, k) for k in keys)


def _repeatable(theirs, fresh) -> bool:
    """Whether the fresh run should repeat the submission's own exactly: the same kind of device, threads and
    versions, and each run trained with the same precision, memory format, graph and compilation (defaults that
    follow the device and its threads, or a notebook that sets them)."""
    if theirs is None or not _same_environment(theirs.environment, fresh.environment):
        return False
    own = {r.name: r.settings for r in theirs.runs}
    return all(r.name in own and all(own[r.name].get(k) == r.settings.get(k) for k in SPEED_SETTINGS)
               for r in fresh.runs)


def grade(submission: str | Path, *, device: str = "auto", out: str | Path | None = None, quick: bool = False,
          tolerance: float | None = None) -> tuple[list[Row], Path]:
    """Re-run and judge a submission; returns the sheet's rows and the folder holding the fresh run."""
    from kit.check import (
        _others,
        _read,
        _sources,
        _strict_enough,
        budget_rules,
        build_models,
        check_kit_assigned,
        check_sanity,
        check_structure,
        epochs_used,
        instructor_rules,
        metrics_path,
        section_text,
        step_notebooks,
    )
    from kit.claims import check_analysis, check_result, claims_by_run, judge_claims
    from kit.claims import figures as claims_figures
    from kit.evidence import check_epoch_lines, check_parameters, check_setup
    from kit.record import Budget, Record, RecordError
    from kit.run import run

    if tolerance is not None and not 0 <= tolerance < float("inf"):
        raise ValueError(f"--tolerance is the accuracy points a claim may differ by: 0 or more, got {tolerance}")
    submission = Path(submission)
    if not submission.is_dir():
        raise FileNotFoundError(f"{submission}: not a folder; give the folder that holds the submission's step notebooks")
    if not (submission / "assignment.json").exists():
        raise FileNotFoundError(f"{submission}: no assignment.json; a submission is a copy of an assignment's "
                                "template folder")
    rules, problems = instructor_rules(submission)
    if rules is None:
        raise ValueError(problems[0].message)
    out = Path(out) if out else Path("grades") / submission.resolve().name
    rows = [Row("all", v.rule, False, note=v.message) for v in problems]
    notebooks = step_notebooks(submission)
    rows.append(Row("all", "assignment/steps", len(notebooks) == rules["steps"], str(rules["steps"]),
                    str(len(notebooks)), "step notebooks"))
    started = time.time()
    status = run([str(submission)], out, quick=quick, device=device)
    wanted = Budget.from_dict(rules["budget"], "the assignment's budget")
    built = build_models(_sources(notebooks))  # the models the `model` cells build, counted apart from the run
    for i, path in enumerate(notebooks):
        step = path.relative_to(submission).as_posix()
        last = i == len(notebooks) - 1
        nb = _read(path)
        if nb is None:
            rows.append(Row(step, "structure/readable", False, note="not a readable notebook"))
            continue
        for v in check_structure(path, nb, None) + check_kit_assigned(path, nb):
            if v.rule != "structure/colab-badge":  # the badge depends on where a student keeps the copy
                rows.append(Row(step, v.rule, False, note=v.message))
        fresh_path = out / path.relative_to(submission).parent / f"{path.stem}.metrics.json"
        try:
            fresh = _fresh_record(fresh_path, started)
            ran = read_notebook(fresh_path.with_name(f"{path.stem}.ipynb"))
        except (RecordError, OSError, ValueError) as e:
            fresh = ran = None
            why = _why_not_run(fresh_path, started, e)
        if rules.get("rf_table"):
            rows.append(_rf_table_row(step, nb, ran))
        if ran is None:
            rows.append(Row(step, "grade/run", False, note=why))
            continue
        where = f"ran on {fresh.environment.device_name}" if fresh.environment else ""
        rows.append(Row(step, "grade/run", True, note=where))
        # the checker's rules on the fresh run: what the student's code recorded must agree with what it printed,
        # be held to the declared budget, count the model the `model` cells build, and leave no Trainer out
        one = built.get(str(path), {})
        declared, violations = budget_rules(path, nb, fresh, one.get("parameters"), one.get("error"))
        evidence = check_epoch_lines(ran, fresh) + check_setup(ran, fresh) + check_parameters(ran, fresh)
        rows += [Row(step, v.rule, False, note=v.message) for v in violations + check_sanity(path, fresh)]
        rows += [Row(step, rule, False, note=message) for rule, message in evidence]
        budget = wanted if last else declared
        for r in fresh.reported if budget else []:
            if not (last or r.budget):
                continue
            used = epochs_used(r, fresh)  # a warm-up Trainer of the same model counts
            misses = budget.misses(parameters=r.parameters, epochs=used,
                                   test_accs=None if fresh.quick else r.history.column("test_acc"))
            for part in ("parameters", "epochs", "consistency"):
                if part == "consistency" and fresh.quick:
                    continue
                measured = {"parameters": f"{r.parameters:,}", "epochs": str(used),
                            "consistency": ", ".join(f"{a:.2f}" for a in r.history.last(budget.consistent_epochs))}[part]
                limit = {"parameters": f"at most {budget.max_parameters:,}", "epochs": f"at most {budget.max_epochs}",
                         "consistency": f"each of the last {budget.consistent_epochs} at least "
                                        f"{budget.target_test_acc}%"}[part]
                held = part not in misses or (not last and _said_missed(nb, fresh, r.name))
                note = ("the assignment's budget" if last else
                        "missed, as the Result says" if held and part in misses else "")
                rows.append(Row(step, f"budget/{part}" + (f" · {r.name}" if r.name else ""), held, limit, measured, note))
        if fresh.quick:
            rows.append(Row(step, "claims", True, note="not judged: a smoke run (--quick) measures no result"))
            continue
        own = metrics_path(path)
        try:
            theirs = Record.load(own) if own else None
        except (RecordError, OSError):
            theirs = None
        tol = tolerance if tolerance is not None else (0.0 if _repeatable(theirs, fresh) else TOLERANCE)
        why = ("the submission brought no record of its own run" if theirs is None else
               "the submission's own run came from another device or setting")
        note = "exact: the same kind of device, threads, versions and speed settings" if tol == 0 else \
            f"within {tol} accuracy points: {why}"
        text = section_text(nb, "Result") or ""
        for name, claims in claims_by_run(text, fresh).items():
            if not claims:
                rows.append(Row(step, "claims/runs", False, measured=name, note="the Result does not report this run"))
                continue
            for j in judge_claims(fresh.run(name), claims, f"{name}: " if name else "", tolerance=tol):
                rows.append(Row(step, j.rule + (f" · {name}" if name else ""), j.held, j.claimed, j.measured,
                                j.message or note))
        analysis = _untimed(section_text(nb, "Analysis") or "")
        if tol == 0:  # a rerun that repeats the run exactly: every other figure must be the fresh run's too
            rows += [Row(step, rule, False, note=message) for rule, message in check_result(_untimed(text), fresh)
                     if rule in BEYOND_CLAIMS]
            reruns = {p.resolve(): out / p.relative_to(submission).parent / f"{p.stem}.metrics.json"
                      for p in notebooks}
            rows += _analysis_rows(step, analysis, fresh, path, reruns, started)
        elif theirs is not None:  # the other figures cannot be repeated here: they must be the submission's run's
            mine = "judged against the submission's own record, whose claims the rows above hold to the fresh run"
            figures = [(r, m) for r, m in check_result(_untimed(text), theirs) if r in BEYOND_CLAIMS]
            figures += check_analysis(analysis, theirs, _others(path))
            rows += [Row(step, rule, False, note=f"{message} ({mine})") for rule, message in figures]
            if not any(r == "claims/analysis" for r, _ in figures):
                rows.append(Row(step, "claims/analysis", True, measured=_count(claims_figures(analysis)),
                                note=mine))
        else:
            rows.append(Row(step, "claims/analysis", False, note="not judged: the submission brought no record of its "
                            "own run, and a rerun elsewhere cannot repeat its figures; submit the record "
                            f"`python -m kit run` wrote beside the report ({path.stem}.metrics.json)"))
    if notebooks:  # the last step declares a budget at least as strict as the assignment's
        last_step = notebooks[-1].relative_to(submission).as_posix()
        rows += [Row(last_step, v.rule, False, note=v.message) for v in _strict_enough(notebooks[-1], wanted)]
    if status not in (0, 1):
        rows.append(Row("all", "grade/run", False, note=f"the re-run was interrupted (status {status})"))
    _write(out, rows, submission)
    return rows, out


def _fresh_record(path: Path, started: float):
    """The record a step's rerun wrote, never one an earlier grade left in the folder."""
    from kit.record import Record, RecordError

    if path.exists() and path.stat().st_mtime < started:
        raise RecordError(f"{path} is from an earlier run: this one did not finish")
    return Record.load(path)


def _rf_table_row(step: str, nb, ran) -> Row:
    """The step shows its receptive-field table in the rerun (`ran`: the rerun notebook, None where it stopped)."""
    from kit.evidence import rf_cells, rf_table_problem

    problem = ("not shown: the rerun stopped (see grade/run)" if ran is None and rf_cells(nb) else
               rf_table_problem(nb, ran))
    return Row(step, "assignment/rf-table", problem is None, note=problem or "shown by the rerun")


def _why_not_run(record_path: Path, started: float, error: Exception) -> str:
    """What the sheet says of a step whose rerun wrote no record: the error the notebook stopped at, where this
    rerun left one (its cell and exception), else what was wrong with the record."""
    from kit.report import _read

    failed = record_path.with_name(record_path.name.replace(".metrics.json", ".failed.json"))
    fresh = failed.exists() and failed.stat().st_mtime >= started  # never a failure an earlier grade left
    said = str((_read(failed) or {}).get("error") or "").strip() if fresh else ""
    return f"the rerun stopped at {said.splitlines()[0]}" if said else f"the notebook did not run to its record: {error}"


def _analysis_rows(step: str, text: str, fresh, path: Path, reruns: dict, started: float) -> list[Row]:
    """Every figure of an Analysis must be the fresh run's, or a linked step's fresh run's (`reruns`: each step's
    resolved path -> its fresh record): a step's own record, which the student could have edited, vouches for
    nothing. A figure that only a file the grade did not rerun holds (a search's JSON, a notebook outside the
    submission) is named in a row of its own, `claims/not-rerun`, for the TA to confirm by hand."""
    from kit.check import _others
    from kit.claims import facts_of, figures, untied_figures
    from kit.record import RecordError

    def step_of(target: str) -> Path:
        """The step notebook a link names: the notebook itself, or its record (`step2.metrics.json`)."""
        linked = (path.parent / target.split("#")[0]).resolve()
        return linked.with_name(linked.name.replace(".metrics.json", ".ipynb"))

    def rerun(target: str):
        record = reruns.get(step_of(target))
        try:
            return facts_of(_fresh_record(record, started)) if record else None
        except (RecordError, OSError):
            return None

    kept = _others(path)
    is_step = lambda target: step_of(target) in reruns  # noqa: E731
    anything = lambda target: rerun(target) if is_step(target) else kept(target)  # noqa: E731
    rows = []
    judged = untied_figures(text, fresh, rerun)
    for (first, by_rerun, links), (_, by_any, _) in zip(judged, untied_figures(text, fresh, anything)):
        if by_any:
            rows.append(Row(step, "claims/analysis", False, ", ".join(by_any),
                            note=f"'{first}…': neither the fresh run nor a report the paragraph links to holds it"))
        unconfirmed = list(dict.fromkeys(f for f in by_rerun if f not in by_any))  # each figure once
        if unconfirmed:
            files = ", ".join(t for t in links if not is_step(t))
            rows.append(Row(step, "claims/not-rerun", True, ", ".join(unconfirmed),
                            note=f"'{first}…': held only by {files}, which this grade did not rerun: confirm it "
                                 "by hand"))
    if not any(r.rule == "claims/analysis" for r in rows):
        rows.append(Row(step, "claims/analysis", True, measured=_count(figures(text)),
                        note="each is the fresh run's, or a linked step's fresh run's"
                             + (", or named above" if rows else "")))
    return rows


def _count(figures: list) -> str:
    return f"{len(figures)} figure{'s' * (len(figures) != 1)}"


def _untimed(text: str) -> str:
    """Text without its durations ('15 epochs in 140 s'): a rerun repeats the numbers, never the seconds."""
    return re.sub(r"\b\d[\d,.]*(?:\s*(?:to|-|\u2013)\s*\d[\d,.]*)?\s*(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b",
                  " ", text)  # '140 s', '150 to 154 s', '2.5 min'


def _said_missed(nb, record, name: str) -> bool:
    from kit.check import section_text
    from kit.claims import verdicts

    text = section_text(nb, "Result")
    return text is not None and verdicts(text, record).get(name) == "missed"


def markdown(rows: list[Row], submission: Path) -> str:
    held = sum(r.held for r in rows)
    unconfirmed = sum(r.rule == "claims/not-rerun" for r in rows)
    lines = [f"# Grade sheet: {submission.name}", "",
             f"{held} of {len(rows)} rules and claims hold, judged against a fresh run of every step."
             + (f" Of these, {unconfirmed} (`claims/not-rerun`) hold only by files the grade did not rerun: "
                "confirm them by hand." if unconfirmed else ""), "",
             "| step | rule | held | claimed | measured | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.step} | {r.rule} | {'yes' if r.held else '**no**'} | {r.claimed} | {r.measured} | "
              f"{r.note.replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def _write(out: Path, rows: list[Row], submission: Path) -> None:
    write_text(out / "grade.md", markdown(rows, submission))
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(["step", "rule", "held", "claimed", "measured", "note"])
    for r in rows:
        w.writerow([r.step, r.rule, "yes" if r.held else "no", r.claimed, r.measured, r.note])
    write_text(out / "grade.csv", buffer.getvalue())
