"""kit.Budget and the metrics a run records."""
import json
from types import SimpleNamespace

import pytest
from torch import nn

from kit.record import Budget, metrics, result, save_metrics
from kit.train import EpochRecord, History


def history(accs):
    return History([EpochRecord(i, 0.1, 99.0, 0.05, a, 0.1, 1.0) for i, a in enumerate(accs, 1)])


def test_budget_verdict_names_each_miss():
    b = Budget(max_parameters=8000, max_epochs=3, target_test_acc=99.4, consistent_epochs=2)
    assert b.verdict(history([99.0, 99.5, 99.41]), 7000) == []
    misses = b.verdict(history([99.0, 99.5, 99.3, 99.6]), 9000)
    assert misses == ["9,000 parameters, over the budget of 8,000", "4 epochs, over the budget of 3",
                      "the last 2 test accuracies are 99.30, 99.60; each must reach 99.4%"]


def test_budget_judges_only_the_parts_given():
    b = Budget(8000, 15, 99.4)
    assert b.misses(parameters=9000) == {"parameters": "9,000 parameters, over the budget of 8,000"}
    assert set(b.misses(test_accs=[99.5, 99.5])) == {"consistency"}  # fewer epochs than K cannot be consistent


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError, match="target in"):
        Budget(8000, 15, 140)
    with pytest.raises(ValueError, match="consistent_epochs"):
        Budget(8000, 3, 99.4, consistent_epochs=4)


def test_metrics_record_and_atomic_save(tmp_path):
    record = metrics(history([98.0, 99.0]), nn.Linear(2, 2), device="cpu", seed=1, seconds=2.0,
                     budget=Budget(100, 5, 90.0))
    assert (record["parameters"], record["best_test_acc"], record["best_test_epoch"]) == (6, 99.0, 2)
    assert record["budget"]["max_epochs"] == 5 and len(record["history"]) == 2
    save_metrics(tmp_path / "m.json", record)
    assert json.loads((tmp_path / "m.json").read_text()) == record
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    save_metrics(None, record)  # no path: nothing written, no error


class _Trained:
    """What result() reads of a Trainer: its model, device and history."""

    def __init__(self, accs, params=2):
        self.model, self.device, self.history = nn.Linear(params - 1, 1), "cpu", history(accs)
        self.train_loader = SimpleNamespace(name="toy")


def test_result_records_one_run_and_prints_its_claims(tmp_path, capsys):
    budget = Budget(100, 5, 99.0, consistent_epochs=2)
    record = result(_Trained([98.0, 99.1, 99.2]), budget=budget, seed=3, quick=False, path=tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == record
    assert (record["seed"], record["quick"], record["seconds"], record["best_test_epoch"]) == (3, False, 3.0, 3)
    assert record["data"] == "toy"
    assert "runs" not in record
    out = capsys.readouterr().out
    assert "Best test accuracy: 99.20% (epoch 3)" in out and "Budget: met" in out


def test_result_of_several_runs_holds_the_named_ones_to_the_budget(capsys):
    budget = Budget(100, 5, 99.0, consistent_epochs=1)
    runs = {"teacher": _Trained([97.0, 98.0], params=500), "student": _Trained([98.5, 99.3])}
    record = result(runs, budget=budget, seed=1, quick=False, held_to_budget=["student"])
    assert [r["name"] for r in record["runs"]] == ["teacher", "student"]
    assert record["parameters"] == 500 and record["runs"][0]["budget"] is None and record["runs"][1]["budget"]
    out = capsys.readouterr().out
    assert "teacher\n  Parameters: 500" in out and out.count("Budget: met") == 1
    assert result(runs, budget=budget, seed=1, quick=False, headline="student")["parameters"] == 2
    with pytest.raises(ValueError, match="headline 'pupil'"):
        result(runs, budget=budget, seed=1, quick=False, headline="pupil")
    with pytest.raises(ValueError, match="held_to_budget names"):
        result(runs, budget=budget, seed=1, quick=False, held_to_budget=["assistant"])


def test_a_smoke_run_says_so_and_is_not_judged(capsys):
    result(_Trained([50.0]), budget=Budget(100, 5, 99.0, 1), seed=1, quick=True)
    out = capsys.readouterr().out
    assert out.startswith("Smoke run") and "Budget" not in out
