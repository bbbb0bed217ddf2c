"""Claims as data: what a Result or an Analysis cell says, read number by number and tied to a record.

A Result states, for every run, its parameters, best train and test accuracy
with their epochs, the last K test accuracies and, for a run held to a budget,
the verdict as a fixed phrase ("Budget: met" / "Budget: missed (...)"). Each
of those is compared with what the record derives from its history, at the
precision printed. Every other number in the Result must be one the record
holds or derives (a per-epoch value, a difference of two, a setting), or it is
flagged: a number that cannot be tied is a claim that cannot be checked.

In an Analysis, the figures (percentages, decimals, parameter counts) must be
ones this notebook's record holds, or ones of a notebook whose report the same
paragraph links to. Only rendered text counts: HTML comments are dropped first.
"""
from __future__ import annotations

import html
import itertools
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from kit.record import Record, Run, mean_spread, seed_groups

COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"`[^`]*`")
# [text](target), [text](<target>), with or without a "title" or 'title'
LINK = re.compile(r"\[([^\]]*)\]\(<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\)")
REFERENCE = re.compile(r"\[([^\]]*)\]\[([^\]]*)\]")  # [text][label], its target defined elsewhere: [label]: target
SHORTCUT = re.compile(r"(?<!\])\[([^\]]+)\](?![\[(:])")  # [label] alone, where [label]: target is defined
DEFINITION = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*<?([^\s>]+)>?", re.M)
HTML_LINK = re.compile(r"<a\s[^>]*?href\s*=\s*[\"']([^\"']*)[\"'][^>]*>(.*?)</a\s*>", re.I | re.S)
BLOCK_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol|tr|td|th|table|h\d|hr)\b[^>]*>", re.I)  # a tag that breaks the line
TAG = re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>")  # any other tag: it shows nothing itself
# A number as prose writes it: 99.49, 10,980, 99.49 %, 9k, 6.4M. A number joined to a word by - or / is part of a
# name (CIFAR-10, step-4); one joined to a figure is a figure of its own (98.91%-99.95%, 98.91/99.95%).
NUMBER = re.compile(r"(?<![\w.,])(?<![^\W\d][/-])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\.?\d)(\s*%|\s?[kKM]\b)?(?!\w)")
SCALE = {"k": 1e3, "K": 1e3, "M": 1e6}
FIGURE_SPAN = re.compile(r"`\s*(\d[\d.,]*\s*%?)\s*`")  # a code span that holds only a figure shows that figure
VERDICT = re.compile(r"\bbudget\b\W{0,3}(?:is\s+)?(met|missed)\b", re.I)


def rendered(text: str) -> str:
    """What a reader sees: no HTML comments, tags or invisible characters, entities as the characters they stand
    for (`99<i></i>.96%` and `9&#57;.94%` show figures); an HTML link as a Markdown one."""
    text = HTML_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", COMMENT.sub("", text))
    text = TAG.sub("", BLOCK_TAG.sub(" ", text))
    text = "".join(c for c in html.unescape(text) if unicodedata.category(c) != "Cf")
    return text


def plain(text: str) -> str:
    """Prose as a reader sees its figures: link texts without targets, no code but figures in code spans, no
    Markdown escapes or emphasis inside a figure (99\\.95%, **99**.95%), '99 percent' and '99,95%' as 99% and 99.95%."""
    text = LINK.sub(lambda m: f" {m.group(1)} ", DEFINITION.sub(" ", text))
    text = REFERENCE.sub(lambda m: f" {m.group(1)} ", text)
    text = CODE_SPAN.sub(" ", FIGURE_SPAN.sub(r" \1 ", text))
    text = re.sub(r"\barXiv:\s*\d{4}\.\d{4,5}(?:v\d+)?|\bdoi:\s*\S+|\b10\.\d{4,9}/\S+", " ", text, flags=re.I)  # citations
    text = SCIENTIFIC.sub(_decimal, text)
    text = re.sub(r"\\([^\w\s])", r"\1", text)
    text = re.sub(r"(?<=[\d.,])[*_]+(?=[\d.,%])", "", text)
    text = re.sub(r"(\d)\s*(?:per\s*cent|percent)\b", r"\1%", text, flags=re.I)
    return re.sub(r"(?<![\d,])(\d{1,3}),(\d{1,2})(?=\s*%)", r"\1.\2", text)


# 4.4×10⁻³, 4.4 x 10^-3, 4.4×10-3 (a superscript once its tags are gone), 4.4e-3: one number, as a decimal
SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
SCIENTIFIC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*[×x·]\s*10\s*(\^\s*[-−]?\d+|[-−]\d+|[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)|"
                        r"[eE]([-+]?\d+))(?!\w)")


def _decimal(m) -> str:
    """A number in scientific notation written out, at the precision its mantissa was given to."""
    mantissa = m.group(1)
    exponent = int(re.sub(r"[\s^]", "", (m.group(2) or m.group(3)).translate(SUPERSCRIPT).replace("−", "-")))
    places = max(0, (len(mantissa.split(".")[1]) if "." in mantissa else 0) - exponent)
    return f"{float(mantissa) * 10 ** exponent:.{places}f}"


def _numbers(text: str) -> list[tuple[str, bool]]:
    """(number as printed, with its k or M; followed by %) for every number in prose (see plain)."""
    return [(m.group(1) + _suffix(m), m.group(2) is not None and "%" in m.group(2))
            for m in NUMBER.finditer(plain(text))]


def _suffix(m) -> str:
    return (m.group(2) or "").strip().replace("%", "")


def _decimals(text: str) -> int:
    text = text.rstrip("kKM")
    return len(text.split(".")[1]) if "." in text else 0


def _value(text: str) -> float:
    """The number a figure stands for: '10,980' is 10980, '9.5k' is 9500."""
    return float(text.rstrip("kKM").replace(",", "")) * SCALE.get(text[-1:], 1)


def _accuracy(number: str, percent: bool) -> tuple[float, int]:
    """(value in percent, decimals printed): 0.9949 written without % reads as 99.49%."""
    value, places = _value(number), _decimals(number)
    if not percent and value <= 1 and places >= 3:
        return value * 100, places - 2
    return value, places


def agrees(claimed: str, recorded: float) -> bool:
    """Whether `recorded` rounds to the claimed number at the precision it was printed."""
    d = _decimals(claimed)
    return round(recorded, d) == round(_value(claimed), d)


# --- what a record holds ----------------------------------------------------------------------

@dataclass
class Facts:
    """Every number a record holds or derives, to tie the numbers of a text to."""

    values: set[float] = field(default_factory=set)
    integers: set[int] = field(default_factory=set)
    percents: set[float] = field(default_factory=set)  # accuracies and what derives from them: what a % may tie to
    accuracies: set[float] = field(default_factory=set)  # the accuracies themselves, to compare with a linked report's
    counts: set[int] = field(default_factory=set)  # parameter counts, likewise

    def accuracy(self, *values) -> None:
        """Accuracies, and their error rates (100 - accuracy: '0.74% of the digits misread')."""
        values = [v for v in values if v is not None]
        self.accuracies.update(values)
        self.add(*values, *(100 - v for v in values), percent=True)

    def across(self, other: Facts) -> Facts:
        """What this run and a linked report's derive together: differences of accuracies and of parameter counts,
        and each count as a percentage of the other's."""
        f = Facts()
        f.add(*(abs(a - b) for a in self.accuracies for b in other.accuracies), percent=True)
        f.add(*(abs(p - q) for p in self.counts for q in other.counts))
        f.add(*(100 * p / q for p in self.counts for q in other.counts if q), percent=True)
        f.add(*(100 - 100 * p / q for p in self.counts for q in other.counts if q), percent=True)
        f.add(*(100 * q / p for p in self.counts for q in other.counts if p), percent=True)
        return f

    def add(self, *values, percent: bool = False) -> None:
        for v in values:
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, int):
                self.integers.add(v)
            if isinstance(v, (int, float)):
                self.values.add(float(v))
                if percent:
                    self.percents.add(float(v))

    def ties(self, claimed: str, percent: bool = False) -> bool:
        d = _decimals(claimed)
        if scale := SCALE.get(claimed[-1:]):  # '9k parameters', '6.4M': a count at the precision written
            shown = _value(claimed) / scale
            return any(round(v / scale, d) == round(shown, d) for v in self.integers)
        value = _value(claimed)
        if percent and value >= 100:  # 100% is a claim of its own, never 99.6% rounded
            return value in self.percents
        if d == 0 and not percent and "," not in claimed:  # a count, an epoch, or a whole number of seconds
            return int(value) in self.integers or any(round(v) == value for v in self.values)
        # each reading at its own precision (0.9970 is not 1.00); a % only of an accuracy (a loss of 2.30 is no 2.30%)
        readings = [(value, d, self.percents if percent else self.values)]
        if not percent and 0.1 <= value < 1 and d >= 3:  # an accuracy written as a fraction: 0.9949 for 99.49%
            readings.append((value * 100, d - 2, self.percents))
        return any(round(v, p) == round(t, p) for t, p, pool in readings for v in pool)


# a rate a model, an augmentation or a schedule names, which prose may write as a percentage (p=0.25: 25%);
# other numbers of their text (a stride of 1, a batch norm's momentum) are not rates a reader speaks of
RATE = re.compile(r"\b(?:p|dropout|drop_rate|pct_start|translate|label_smoothing|smoothing|rate)\s*=\s*\(?([0-9.]+)")


def _numbers_in(text: str) -> list[float]:
    return [_value(n) for n, _ in _numbers(str(text))]


def facts_of(record: Record) -> Facts:
    f = Facts()
    runs = record.runs
    f.add(len(runs), len(record.reported))
    for r in runs:
        d = r.derived()
        f.add(r.parameters, r.trainable_parameters, r.epochs, r.seed, r.train_images, r.test_images, r.seconds,
              d["best_train_epoch"], d["best_test_epoch"], len(d["last_test_acc"]))
        f.counts.update({r.parameters, r.trainable_parameters})
        f.accuracy(d["best_train_acc"], d["best_test_acc"])
        f.add(*range(1, r.epochs + 1))
        if r.budget:
            b = r.budget
            f.add(b.max_parameters, b.max_epochs, b.consistent_epochs, b.max_parameters - r.parameters)
            f.add(b.target_test_acc, *(abs(b.target_test_acc - e.test_acc) for e in r.history.epochs), percent=True)
            f.add(100 * r.parameters / b.max_parameters, 100 - 100 * r.parameters / b.max_parameters, percent=True)
            last = r.history.column("test_acc")[-b.consistent_epochs:]
            f.accuracy(mean_spread(last)[0])  # the mean of the last K epochs the budget looks at
        for e in r.history.epochs:
            f.add(e.train_loss, e.test_loss, e.lr, e.seconds)
            f.accuracy(e.train_acc, e.test_acc)
            f.add(e.train_acc - e.test_acc, e.test_acc - e.train_acc, percent=True)
        accs = r.history.column("test_acc")
        f.add(*(abs(a - b) for a, b in itertools.combinations(accs, 2)), percent=True)
        f.add(*(abs(a - b) for a, b in itertools.combinations(r.history.column("train_acc"), 2)), percent=True)
        f.add(*(abs(a - b) for a, b in itertools.combinations(r.history.column("test_loss"), 2)))
        for key in ("lr", "momentum", "weight_decay", "label_smoothing", "batch_size"):
            f.add(r.settings.get(key))
        rate = r.settings.get("label_smoothing")
        f.add(100 * rate if isinstance(rate, float) and 0 < rate < 1 else None, percent=True)  # smoothing of 10%
        for text in (*r.settings.get("callbacks", []), r.settings.get("augment", ""), r.settings.get("architecture", "")):
            f.add(*_numbers_in(text))
            f.add(*(100 * float(v) for v in RATE.findall(str(text)) if 0 < float(v) < 1), percent=True)
        f.add(*r.settings.get("layer_parameters", {}).values())
    for a, b in itertools.combinations(runs, 2):  # one run against another: best against best, epoch by epoch
        f.add(abs(a.parameters - b.parameters))
        f.add(abs(a.derived()["best_test_acc"] - b.derived()["best_test_acc"]), percent=True)
        f.add(*(abs(x.test_acc - y.test_acc) for x, y in zip(a.history.epochs, b.history.epochs)), percent=True)
        if b.parameters:
            f.add(100 * a.parameters / b.parameters, 100 * b.parameters / a.parameters if a.parameters else None,
                  percent=True)
    for rs in seed_groups(record.reported).values():
        for values in ([r.derived()["best_test_acc"] for r in rs], [r.history[-1].test_acc for r in rs]):
            mean, spread = mean_spread(values)
            f.accuracy(mean)
            f.add(spread, percent=True)
    return f


# --- the Result: the fixed claims about each run ---------------------------------------------------

ACC = r"(\d+(?:\.\d+)?)\s*(%?)"
EPOCH = r"(?:\s*\(?\s*(?:at\s+|in\s+)?epoch\s*(\d+)(?:\s*(?:of|/)\s*\d+)?\s*\)?)?"
VERB = r"(?:(?:was|is|of|reached|reaches)\s+)?"  # "best test accuracy was 99.41%"
CLAIMS = {
    "parameters": re.compile(r"\bparam(?:eter)?s?\b\W{0,3}(\d{1,3}(?:,\d{3})+|\d+)(?!\.\d)(\s*[kKmM]\b)?", re.I),
    # "the model has 1,418 parameters": the count written first (never a budget's "under 8,000 parameters")
    "parameters-first": re.compile(r"\b(?:has|have|had|with|of)\s+(\d{1,3}(?:,\d{3})+|\d+)(?!\.\d)(\s*[kKmM]\b)?\s+"
                                   r"(?:trainable\s+)?param(?:eter)?s\b", re.I),
    "best-train": re.compile(r"\bbest\s+train(?:ing)?\s+acc(?:uracy)?\b\W{0,3}" + VERB + ACC + EPOCH, re.I),
    "best-test": re.compile(r"\bbest\s+test\s+acc(?:uracy)?\b\W{0,3}" + VERB + ACC + EPOCH, re.I),
    "last": re.compile(r"\blast\s+(\d+)\s+test\s+accurac(?:y|ies)\b\W{0,3}((?:\d+(?:\.\d+)?%?(?:,\s*|\s+and\s+)?)+)", re.I),
}
HEADERS = {"parameters": "parameters", "best train": "best-train", "best test": "best-test", "last": "last",
           "budget": "budget"}


@dataclass
class Claim:
    rule: str  # "parameters", "best-train", "best-test", "last", "budget"
    text: str  # the claim as read
    value: object  # what it claims: a number as printed, (value, epoch), a list, "met"/"missed"


def claims_in(text: str) -> list[Claim]:
    """The fixed claims of one run, from a line or a block of lines in prose form."""
    out = []
    for rule, rx in CLAIMS.items():
        for m in rx.finditer(text):
            if rule.startswith("parameters"):
                out.append(Claim("parameters", m.group(0), (m.group(1), (m.group(2) or "").strip().lower())))
            elif rule == "last":
                out.append(Claim(rule, m.group(0), (int(m.group(1)), re.findall(r"\d+(?:\.\d+)?", m.group(2)))))
            else:
                out.append(Claim(rule, m.group(0), (m.group(1), bool(m.group(2)), m.group(3))))
    out += [Claim("budget", m.group(0), m.group(1).lower()) for m in VERDICT.finditer(text)]
    return out


def table_claims(text: str) -> dict[str, list[Claim]]:
    """Claims by run name from Markdown tables whose header names the columns (run, parameters, best train ...)."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    out: dict[str, list[Claim]] = {}
    header = None
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue
        if header is None or (cells and cells[0].lower() in ("run", "name", "seed", "norm")):
            header = [c.lower() for c in cells]
            continue
        name = re.sub(r"[*_`]", "", cells[0]).strip()
        claims = []
        for title, cell in zip(header[1:], cells[1:]):
            kind = next((k for key, k in HEADERS.items() if title.startswith(key)), None)
            if kind == "parameters" and (m := re.search(r"\d{1,3}(?:,\d{3})+|\d+", cell)):
                claims.append(Claim(kind, cell, (m.group(0), "")))
            elif kind in ("best-train", "best-test") and (m := re.match(ACC + EPOCH, cell)):
                claims.append(Claim(kind, cell, (m.group(1), bool(m.group(2)), m.group(3))))
            elif kind == "last":
                k = re.search(r"last\s+(\d+)", title)
                claims.append(Claim(kind, cell, (int(k.group(1)) if k else None, re.findall(r"\d+(?:\.\d+)?", cell))))
            elif kind == "budget" and (m := re.match(r"(met|missed)\b", cell, re.I)):
                claims.append(Claim(kind, cell, m.group(1).lower()))
        out.setdefault(name, []).extend(claims)  # a run in two tables: every row is judged
    return out


def _labels(line: str, name: str) -> bool:
    """Whether a prose line is about run `name`: '- seed 2: ...', '- **group norm**: ...'."""
    return re.match(rf"\s*[-*]?\s*\**{re.escape(name)}\**\s*(?:[:(\u2014\u2013-]|$)", line, re.I) is not None


def _blocks(text: str, names: list[str]) -> dict[str, str]:
    """For prose Results of several runs: every line naming each run, with any lines indented below it."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for name in sorted(names, key=len, reverse=True):
            if name and _labels(line, name):
                block = [line]
                indent = len(line) - len(line.lstrip())
                for nxt in lines[i + 1:]:
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent:
                        block.append(nxt)
                    else:
                        break
                out[name] = "\n".join([*([out[name]] if name in out else []), *block])
                break
    return out


@dataclass
class Judged:
    """One claim about a run, judged against a record: what was claimed, what was measured, whether they agree."""

    rule: str  # "claims/parameters", "claims/best-test", ...
    run: str
    claimed: str
    measured: str
    held: bool
    message: str = ""


def _close(value: float, places: int, recorded: float, tolerance: float) -> bool:
    """Equal at the printed precision, or within `tolerance` (a rerun elsewhere cannot repeat a run exactly)."""
    return round(recorded, places) == round(value, places) or abs(recorded - value) <= tolerance


def judge_claims(run: Run, claims: list[Claim], label: str, *, required: bool = True,
                 tolerance: float = 0.0) -> list[Judged]:
    """Each claim about `run` against its record, and the claims a Result must make but left out.

    With a `tolerance` (accuracy points), an accuracy may differ by that much and the epoch of a best
    accuracy is not judged: a rerun on another device cannot repeat the run exactly.
    """
    d = run.derived()
    out = []
    j = lambda rule, claimed, measured, held, msg="": out.append(  # noqa: E731
        Judged(rule, run.name, claimed, measured, held, f"{label}{msg}" if msg else ""))
    kinds = {c.rule for c in claims}
    verdict = "met" if not d["budget_misses"] else "missed"
    if required:
        for k in ("parameters", "best-train", "best-test"):
            if k not in kinds:
                j("claims/missing", "", k, False, f"the Result does not state the {k.replace('-', ' ')}")
        if run.budget is not None and "budget" not in kinds:
            j("claims/verdict", "", verdict, False, "the run is held to a budget: say 'Budget: met' or 'Budget: "
                                                     f"missed (...)' (the record says {verdict})")
    history = run.history.epochs
    for c in claims:
        if c.rule == "parameters":
            number, unit = c.value
            scale = {"k": 1e3, "m": 1e6}.get(unit, 1)
            ok = any(agrees(number, p / scale) for p in (run.parameters, run.trainable_parameters))
            j("claims/parameters", f"{number}{unit}", f"{run.parameters:,}", ok,
              "" if ok else f"claims {number}{unit}, recorded {run.parameters:,}")
        elif c.rule in ("best-train", "best-test"):
            number, percent, epoch = c.value
            key = "train_acc" if c.rule == "best-train" else "test_acc"
            best, best_epoch = d[f"best_{key}"], d[f"best_{key[:-4]}_epoch"]
            value, places = _accuracy(number, percent)
            shown = f"{number}{'%' if percent else ''}" + (f" (epoch {epoch})" if epoch else "")
            measured = f"{best:.2f}% (epoch {best_epoch})"
            if not _close(value, places, best, tolerance):
                j(f"claims/{c.rule}", shown, measured, False,
                  f"claims {number}{'%' if percent else ''}, recorded {best:.2f}%")
            elif epoch is None:
                j(f"claims/{c.rule}-epoch", shown, measured, tolerance > 0, "" if tolerance else
                  f"claims no epoch for the {c.rule.replace('-', ' ')} accuracy; give it, e.g. '(epoch {best_epoch})'")
            else:
                at = [r.epoch for r in history if round(getattr(r, key), places) == round(value, places)]
                ok = int(epoch) in at or tolerance > 0
                j(f"claims/{c.rule}-epoch" if not ok else f"claims/{c.rule}", shown, measured, ok,
                  "" if ok else f"claims epoch {epoch}, recorded epoch {best_epoch}")
        elif c.rule == "last":
            k, values = c.value
            k = k or len(values)
            recorded = run.history.last(k)
            ok = len(values) == len(recorded) and all(
                _close(_value(v), _decimals(v), r, tolerance) for v, r in zip(values, recorded))
            j("claims/last", ", ".join(values), ", ".join(f"{a:.2f}" for a in recorded), ok, "" if ok else
              f"claims the last {k} test accuracies are {', '.join(values)}; recorded "
              f"{', '.join(f'{a:.2f}' for a in recorded)}")
        elif c.rule == "budget" and run.budget is not None:
            ok = c.value == verdict
            j("claims/budget", c.value, verdict, ok, "" if ok else
              f"the Result says the budget is {c.value}; the run "
              f"{'meets it' if verdict == 'met' else 'misses it: ' + '; '.join(d['budget_misses'].values())}")
    return out


def check_run_claims(run: Run, claims: list[Claim], label: str, required: bool = True) -> list[tuple[str, str]]:
    """(rule, message) for each claim about `run` that its record does not bear out; and the ones left out."""
    return [(c.rule, c.message) for c in judge_claims(run, claims, label, required=required) if not c.held]


def claims_by_run(text: str, record: Record) -> dict[str, list[Claim]]:
    """What a Result claims of each reported run (tables and prose alike)."""
    text = rendered(text)
    reported = record.reported
    if len(reported) == 1 and not reported[0].name:
        return {"": claims_in(text)}
    tables = table_claims(text)
    blocks = _blocks(text, [r.name for r in reported])
    return {r.name: tables.get(r.name, []) + claims_in(blocks.get(r.name, "")) for r in reported}


def verdicts(text: str, record: Record) -> dict[str, str | None]:
    """What the Result says of each run's budget ('met', 'missed', or None), read from the fixed phrase only."""
    return {name: next((c.value for c in claims if c.rule == "budget"), None)
            for name, claims in claims_by_run(text, record).items()}


def check_result(text: str, record: Record) -> list[tuple[str, str]]:
    """Every claim of a Result against its record; then every number it holds must tie to the record."""
    text = rendered(text)
    out = []
    for name, claims in claims_by_run(text, record).items():
        if name and not claims:
            out.append(("claims/runs", f"the Result does not report the run '{name}' (a table row or a line that "
                                       "starts with its name)"))
            continue
        out += check_run_claims(record.run(name), claims, f"{name}: " if name else "")
    facts = facts_of(record)
    untied = sorted({f"{n}{'%' if pct else ''}" for n, pct in _numbers(_without_names(text, record))
                     if not facts.ties(n, pct)}, key=lambda s: _value(s.rstrip("%")))
    if untied:
        out.append(("claims/untied", f"the Result states {', '.join(untied)}, which the record neither holds nor "
                                     "derives; state only what the run measured"))
    return out + check_where(text, record) + check_how(text, record)


# --- where a run ran: the Result's words for the device and threads must be the record's ----------
# Only plain statements about this run count: a sentence that compares, supposes or denies ('slower than on a
# GPU', 'an H100 would take seconds', 'not on a GPU') and a link's text (another run's) say nothing of it.

HEDGE = re.compile(r"\b(?:would|could|might|than|unlike|compared?|not|never|without|instead|if|whereas)\b|n't\b",
                   re.I)
KIND = re.compile(r"\b(?:on|with|using)\s+(?:(?:a|an|the|one|its|this|that|single|\d+)\s+){0,2}(CPU|GPU|CUDA|MPS)s?\b|"
                  r"\b(CPU|GPU)[- ]only\b", re.I)
MODEL = re.compile(r"\bNVIDIA\s+(?:GeForce\s+|Tesla\s+|Quadro\s+)?(RTX\s+\d{4}\w*|\w*\d\w*)|"  # NVIDIA H100, RTX 4090
                   r"\b((?:RTX|GTX)\s?\d{3,4}\w*(?:\s+Ti)?|[HABVP]100|H200|GH200|B200|A[1-8]0G?|L40S?)\b|"  # by name
                   r"\b(?:Tesla\s+|on\s+(?:an?|the)\s+)(T4|L4)\b|\b(T4|L4)\s+GPU|"  # short names, where they mean one
                   r"\b(EPYC|Xeon|Ryzen|Core\s+i\d|Apple\s+M\d\w*)\b", re.I)
VERSION = re.compile(r"\b(?:PyTorch|torch|torchvision|Python|CUDA|cuDNN|kit)\s+v?\d+(?:\.\d+)*\S*", re.I)
CPU_BRANDS = re.compile(r"\b(?:AMD|Intel|EPYC|Xeon|Ryzen|Core|Apple)\b", re.I)  # a CPU name that names a model
THREADS = re.compile(r"\b(one|two|three|four|six|eight|twelve|sixteen|single|\d+)[\s-]+(?:CPU[\s-]+)?"
                     r"thread(?:s|ed)?\b(?!\s+(?:for|of)\s+(?:the\s+)?(?:data|loading|workers?))", re.I)
COUNTS = {"one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "six": 6, "eight": 8, "twelve": 12, "sixteen": 16}
KINDS = {"cpu": {"CPU"}, "cuda": {"GPU", "CUDA"}, "mps": {"GPU", "MPS"}}


def check_where(text: str, record: Record) -> list[tuple[str, str]]:
    """A Result that says where its run ran (on a CPU or a GPU, which model, how many threads) must say what the
    record's environment says: words left from an earlier run on another machine are caught."""
    env = record.environment
    if env is None:
        return []
    clauses = _plain_clauses(text)
    own = KINDS.get(env.device, {env.device.upper()})
    kinds = [(m.group(0).strip(), (m.group(1) or m.group(2)).upper()) for x in clauses for m in KIND.finditer(x)]
    said = []
    if not any(re.search(rf"\b{kind}\b", x, re.I) for x in clauses for kind in own):  # 'the GPU waited for data
        said += [words for words, kind in kinds if kind not in own]                  # loaded on the CPU'
    device_name = re.sub(r"\((?:R|TM)\)", "", env.device_name)  # Intel(R) Core(TM) i7: Intel Core i7
    models = env.device == "cuda" or (env.device == "cpu" and CPU_BRANDS.search(device_name))
    for m in (m for x in clauses for m in MODEL.finditer(x)) if models else ():
        name = r"\s*".join(re.escape(part) for part in next(g for g in m.groups() if g).split())
        if not re.search(rf"(?<![A-Za-z0-9]){name}(?![A-Za-z0-9])", device_name, re.I):
            said.append(m.group(0).strip())
    # threads are the CPU's: on a GPU run, threads a Result speaks of are data loading's, not the record's
    for m in (m for x in clauses for m in THREADS.finditer(x)) if env.device == "cpu" else ():
        count = m.group(1).lower()
        if COUNTS.get(count, int(count) if count.isdigit() else None) != env.threads:
            said.append(m.group(0))
    if not said:
        return []
    return [("claims/where", f"the Result says {', '.join(repr(w) for w in dict.fromkeys(said))}, but the run "
                             f"ran on {env.device_name} ({env.device}), {env.threads} CPU "
                             f"thread{'s' * (env.threads != 1)}; say where this run ran")]


def _plain_clauses(text: str) -> list[str]:
    """The Result's plain statements: a hedge ('without AMP', 'whereas the first ran on an H100') sets aside its own
    clause only; a link's text is another run's."""
    prose = plain(LINK.sub(" ", rendered(text)))
    return [x for x in re.split(r"(?<=[.;:!?,])\s+|\n|\s(?=\b(?:but|whereas|while)\b)", prose) if not HEDGE.search(x)]


# --- how a run trained: the Result's words for its precision and its step must be a run's of the record ------
# Words left from a run made with other settings (bf16 autocast over a rerun in fp32, a captured step where the
# run was eager) are caught; a record made before the kit kept a setting is not judged on it.
HOW = (  # (words, the setting, whether a run with that value makes the words true)
    (re.compile(r"(?i:\b(?:bf16|bfloat16|autocast|mixed[- ]precision)\b)|\bAMP\b"), "amp",
     lambda v: v not in (None, "float32")),
    (re.compile(r"\bCUDA[- ]graphs?\b|\bcaptured\s+(?:CUDA[- ]graph\s+)?step\b|\bgraph\s+replays?\b", re.I),
     "graph", lambda v: v is True),
    (re.compile(r"\beager(?:ly)?\b", re.I), "graph", lambda v: v is False),
)

WORDS = {"amp": lambda v: "fp32" if v in (None, "float32") else str(v),  # a record's setting, as a Result says it
         "graph": lambda v: "the CUDA-graph step" if v else "the eager step"}
# a clause that says a setting was off ('fp32, no autocast', 'the CUDA graph off') or what one needs ('CUDA graphs
# need a GPU') says nothing of how this run trained
OFF = re.compile(r"\b(?:no|off|disabled|neither|nor|needs?|requires?)\b", re.I)


def check_how(text: str, record: Record) -> list[tuple[str, str]]:
    """A Result that says how its runs trained (bf16 autocast, the captured CUDA-graph step, the eager one) must
    say what one of the record's runs did."""
    clauses = [x for x in _plain_clauses(text) if not OFF.search(x)]
    said, settings = [], set()
    for words, key, true in HOW:
        values = [r.settings[key] for r in record.runs if key in r.settings]
        if not values or any(map(true, values)):
            continue
        found = [m.group(0) for x in clauses for m in words.finditer(x)]
        if found:
            said += found
            settings |= {WORDS[key](v) for v in values}
    if not said:
        return []
    return [("claims/how", f"the Result says {', '.join(repr(w) for w in dict.fromkeys(said))}, but no run of its "
                           f"record trained so (its runs: {', '.join(sorted(settings))}); say how this run trained")]


def _without_names(text: str, record: Record) -> str:
    """The Result without the runs' names and the device's, whose numbers ('seed 2', 'RTX 4090') are names, not
    figures."""
    names = [r.name for r in record.runs] + ([record.environment.device_name] if record.environment else [])
    for name in sorted(names, key=lambda n: -len(n)):
        if name:
            text = text.replace(name, " ")
    text = MODEL.sub(" ", text)  # any device's name: whether it is this run's is claims/where's to say
    return VERSION.sub(" ", text)


# --- the Analysis: figures must be the record's, or a linked report's -------------------------------

FIGURE = re.compile(r"%|\.|,")


def figures(text: str) -> list[tuple[str, bool]]:
    """The numbers an Analysis states as results: percentages, decimals, counts with thousands separators,
    and numbers followed by 'parameters'."""
    out = []
    prose = plain(text)
    for m in NUMBER.finditer(prose):
        number, percent = m.group(1) + _suffix(m), "%" in (m.group(2) or "")
        after = prose[m.end():m.end() + 12].lower()
        if percent or any(c in number for c in ".,kKM") or after.lstrip().startswith("param"):
            out.append((number, percent))
    return out


def paragraphs(text: str) -> list[str]:
    """Bullets and paragraphs: the unit within which a link to another report vouches for its figures."""
    parts, current = [], []
    for line in text.splitlines():
        nested = re.match(r"\s{2,}(?:[-*]|\d+\.)\s", line) and current  # a sub-bullet belongs to its bullet
        if not current and parts and re.match(r"\s{2,}\S", line) and re.match(r"\s*(?:[-*]|\d+\.)\s", parts[-1]):
            current = [parts.pop(), line]  # an indented paragraph after a blank line is still its bullet's
            continue
        if not nested and re.match(r"\s*(?:[-*]|\d+\.)\s", line) or not line.strip():
            if current:
                parts.append("\n".join(current))
            current = [line] if line.strip() else []
        else:
            current.append(line)
    if current:
        parts.append("\n".join(current))
    return parts


def linked_reports(paragraph: str, definitions: dict[str, str] | None = None) -> list[str]:
    """The notebooks (whose records the checker finds) and records files a paragraph links to, inline or by a
    reference whose target `definitions` (label -> target) gives ([text][label], [label][] or [label])."""
    definitions = definitions or {}
    targets = [target for _, target in LINK.findall(paragraph)]
    targets += [definitions.get((label or text).lower(), "") for text, label in REFERENCE.findall(paragraph)]
    targets += [definitions.get(label.lower(), "") for label in SHORTCUT.findall(LINK.sub(" ", paragraph))]
    targets = [urllib.parse.unquote(t) for t in targets]  # step%202.ipynb is the file `step 2.ipynb`
    return [t for t in targets if t.split("#")[0].endswith((".ipynb", ".json"))]


def definitions_of(text: str) -> dict[str, str]:
    """Reference definitions ([label]: target), label -> target; the first of a label counts, as in Markdown."""
    out: dict[str, str] = {}
    for label, target in DEFINITION.findall(text):
        out.setdefault(label.lower(), target)
    return out


def untied_figures(text: str, record: Record, others) -> list[tuple[str, list[str], list[str]]]:
    """(first line, figures no fact holds, links to reports) for each paragraph of an Analysis, in order: a figure
    is held by this notebook's record or by a report the paragraph links to (`others(target)`: its Facts, or
    None)."""
    facts = facts_of(record)
    out = []
    definitions = definitions_of(rendered(text))
    for paragraph in paragraphs(DEFINITION.sub("", rendered(text))):
        links = linked_reports(paragraph, definitions)
        extra = [f for f in (others(t) for t in links) if f is not None]
        extra += [facts.across(f) for f in extra]  # 'up 3.18 points on the linked step', '62% of its parameters'
        bad = [f"{n}{'%' if pct else ''}" for n, pct in figures(_without_names(paragraph, record))
               if not facts.ties(n, pct) and not any(f.ties(n, pct) for f in extra)]
        out.append((paragraph.strip().splitlines()[0][:70] if paragraph.strip() else "", bad, links))
    return out


def check_analysis(text: str, record: Record, others) -> list[tuple[str, str]]:
    """Each figure of an Analysis must be this notebook's record's, or a linked notebook's.

    `others(target)` gives the Facts of the notebook a link points to, or None.
    """
    return [("claims/analysis", f"'{first}…' states {', '.join(bad)}: neither this run's record nor a report the "
                                "paragraph links to holds it")
            for first, bad, _ in untied_figures(text, record, others) if bad]
