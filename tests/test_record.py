"""kit.Budget and the metrics a run records."""
import json

import pytest
from torch import nn

from kit.record import Budget, metrics, save_metrics
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
