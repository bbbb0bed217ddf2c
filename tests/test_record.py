"""kit.Budget, the record's schema, and the Result that `result()` prints from it."""
import json
import platform
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import kit
from conftest import make_imageset
from kit.history import EpochRecord, History
from kit.record import SCHEMA, Budget, Environment, Record, RecordError, Run, markdown, result
from kit.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


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
    with pytest.raises(ValueError, match="max_parameters, max_epochs"):
        Budget.from_dict({"max_params": 8000, "max_epochs": 15, "target_test_acc": 99.4})


def fitted(epochs=2, name="", model=None):
    d = make_imageset(n=64)
    train, test = kit.make_loaders((d, d), batch_size=16, device="cpu", seed=3)
    t = Trainer(model or nn.Sequential(kit.ConvBlock(1, 4), kit.GapHead(4, 4)), train, test, epochs=epochs,
                lr=0.05, verbose=False, name=name)
    t.fit()
    return t


def test_a_run_derives_every_claim_from_its_history():
    run = Run("", 7000, 7000, history([98.0, 99.5, 99.41]), Budget(8000, 3, 99.4, 2))
    d = run.derived()
    assert (d["epochs"], d["best_test_acc"], d["best_test_epoch"]) == (3, 99.5, 2)
    assert d["last_test_acc"] == [99.5, 99.41] and d["budget_misses"] == {}


def test_the_record_round_trips_through_json(tmp_path):
    Trainer.forget_fitted()
    t = fitted()
    record = result(t, budget=Budget(100, 5, 50.0, 1), path=tmp_path / "m.json")
    back = Record.load(tmp_path / "m.json")
    assert back.to_dict() == record.to_dict()
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["schema"] == SCHEMA and d["runs"][0]["seed"] == 3 and d["runs"][0]["data"] == "toy"
    assert d["runs"][0]["derived"]["epochs"] == 2 and len(d["runs"][0]["history"]) == 2
    env = d["environment"]
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["torch"] == torch.__version__
    assert "train.py" in env["kit_code"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # written atomically, nothing left beside it


def test_every_parameter_counts_frozen_ones_too():
    model = nn.Sequential(kit.ConvBlock(1, 4), kit.GapHead(4, 4))
    model[0].conv.weight.requires_grad_(False)
    Trainer.forget_fitted()
    record = result(fitted(model=model), budget=None)
    run = record.runs[0]
    assert run.parameters == 36 + 8 + 16 and run.trainable_parameters == 8 + 16


def test_a_trainer_fitted_but_not_reported_is_recorded_and_counts():
    Trainer.forget_fitted()
    warm_up, main = fitted(epochs=1), fitted(epochs=2)
    record = result(main, budget=None)
    assert [(r.name, r.reported, r.epochs) for r in record.runs] == [("", True, 2), ("unreported trainer 1", False, 1)]
    assert warm_up.history  # still alive: it was recorded because it lives


def test_a_trainer_no_variable_keeps_is_still_recorded():
    import gc

    fitted(epochs=3, name="warm-up")  # kept by nothing: a warm-up, say
    gc.collect()
    record = result(fitted(epochs=2), budget=None)
    assert [(r.name, r.reported, r.epochs) for r in record.runs] == [("", True, 2), ("unreported trainer 1", False, 3)]


def test_the_record_counts_the_model_the_trainer_trained():
    main = fitted(epochs=1)
    with pytest.raises(AttributeError, match="trains the model it was built with"):
        main.model = nn.Linear(1, 1)  # a smaller model to count in its place
    assert result(main, budget=None).runs[0].parameters == sum(p.numel() for p in main.model.parameters())


def test_the_record_says_what_training_did_whatever_changed_after():
    from kit.check import epochs_used

    model = nn.Sequential(kit.ConvBlock(1, 4), kit.ConvBlock(4, 4), kit.GapHead(4, 4))
    d = make_imageset(n=64)
    train, test = kit.make_loaders((d, d), batch_size=16, device="cpu", seed=3)
    t = Trainer(model, train, test, epochs=2, lr=0.05, verbose=False)
    for e in (1, 2, 3):
        t.train_epoch(e)  # epochs trained by hand, outside fit()
    t.fit()
    trained = sum(p.numel() for p in model.parameters())
    model[1] = nn.Identity()  # the model shrunk after training
    t.train_loader = test  # and its loader swapped back and forth
    run = result(t, budget=None).runs[0]
    assert run.epochs == 2 and run.settings["model_epochs"] == 5
    assert epochs_used(run, Record([run], quick=False)) == 5
    assert run.parameters == trained
    assert run.settings["trained_on"] == [[True, 64]] and run.settings["tested_on"] == [[False, 64]]


def test_result_prints_the_canonical_form(capsys):
    Trainer.forget_fitted()
    record = result(fitted(epochs=3), budget=Budget(100, 5, 0.1, consistent_epochs=2))
    out = capsys.readouterr().out
    d = record.runs[0].derived()
    assert f"- Best test accuracy: {d['best_test_acc']:.2f}% (epoch {d['best_test_epoch']})" in out
    assert "- Last 2 test accuracies: " in out and "- Budget: met" in out and "- 3 epochs in" in out


def test_several_runs_print_a_table_with_each_runs_verdict(capsys):
    Trainer.forget_fitted()
    runs = {"teacher": fitted(name="teacher"), "student": fitted(name="student")}
    record = result(runs, budget=Budget(100, 5, 99.99, 1), held_to_budget=["student"], headline="student")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| run | parameters |") and "last 1 test accuracy |" in lines[0]
    assert lines[1].startswith("| student |") and "| missed (the last 1 test accuracies are " in lines[1]
    assert lines[2].startswith("| teacher |") and lines[2].endswith("| — |")
    assert record.headline == "student" and record.head.name == "student"
    with pytest.raises(ValueError, match="headline 'pupil'"):
        result(runs, budget=None, headline="pupil")
    with pytest.raises(ValueError, match="held_to_budget names"):
        result(runs, budget=None, held_to_budget=["assistant"])


def test_runs_over_seeds_get_their_mean_and_spread():
    runs = [Run(f"{name} · seed {s}", 10, 10, history([80.0, base + s]), seed=s) for name, base in (("a", 90), ("b", 95))
            for s in (1, 2, 3)]
    text = markdown(Record(runs=runs, quick=False))
    assert "Over seeds 1, 2, 3 (mean ± standard deviation):" in text
    assert "| a | 92.00 ± 1.00% | 92.00 ± 1.00% |" in text and "| b | 97.00 ± 1.00% |" in text


def test_a_smoke_run_says_so_and_is_not_judged(capsys):
    Trainer.forget_fitted()
    result(fitted(epochs=1), budget=Budget(100, 5, 99.0, 1), quick=True)
    out = capsys.readouterr().out
    assert out.startswith("Smoke run") and "Budget" not in out


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must be a JSON object"),
    ('{"schema": 1, "runs": []}', "schema 1; this kit reads schema 2"),
    ('{"schema": 2, "runs": []}', "has no runs"),
    ('{"schema": 2, "runs": [{"name": ""}]}', "at least history, name, parameters"),
    ('{"schema": 2, "runs": [{"name": "", "parameters": 1, "history": [{"epoch": 1}]}]}',
     "its history must be a non-empty list"),
    ("{not json", "is not valid JSON"),
])
def test_a_broken_record_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "x.metrics.json"
    path.write_text(content)
    with pytest.raises(RecordError, match=message):
        Record.load(path)


def test_the_environment_says_what_produced_a_run():
    env = Environment.here("cpu")
    text = env.describe()
    assert env.device == "cpu" and env.device_name and f"torch {torch.__version__}" in text and "thread" in text
    assert f"torchvision {torchvision.__version__}" in text and f"Python {platform.python_version()}" in text
    assert (f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA") in text
    # the CPU's kernels, which its model name does not always tell ("Intel Xeon Processor" runs AVX2 or AVX-512)
    assert env.cpu_kernels == torch.backends.cpu.get_cpu_capability() and f"{env.cpu_kernels} kernels" in text


def test_the_package_has_one_version_the_one_records_name():
    import importlib.metadata

    import kit

    project = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', project, re.M) and 'version = {attr = "kit.__version__"}' in project
    try:
        installed = importlib.metadata.version("drill-down-kit")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the kit is not installed as a package here (pip install -e .)")
    assert installed == kit.__version__
