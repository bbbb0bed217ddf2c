"""A run made after its notebook changed the kit says so in its record, and the checker refuses it."""
import importlib
import json

import pytest
import torch

import kit
from kit import integrity
from kit.record import Record, RecordError


def test_the_kit_as_imported_is_unchanged_and_a_module_reloaded_unchanged_is_no_change():
    assert integrity.changed() == []
    before = dict(vars(kit.callbacks))
    try:
        importlib.reload(kit.callbacks)  # new objects, the same code
        assert kit.callbacks.OneCycle is not before["OneCycle"] and integrity.changed() == []
    finally:
        vars(kit.callbacks).update(before)  # the classes every other test's objects are instances of


def test_a_replaced_method_setting_or_added_method_is_named(monkeypatch):
    # a decorated stand-in (torch.no_grad wraps it) is unwrapped before its code is compared
    monkeypatch.setattr(kit.Trainer, "test_epoch", torch.no_grad()(lambda self, epoch=0, loader=None: (0.0, 99.9)))
    monkeypatch.setattr(kit.train, "CHECK_EVERY", 1)
    monkeypatch.setitem(kit.loaders.TEST_BATCH, "cpu", 7)
    monkeypatch.setattr(kit.Trainer, "peek", lambda self: None, raising=False)
    monkeypatch.setattr(kit.transforms, "affine_matrices", lambda *a, **k: None)
    monkeypatch.setattr(kit, "make_loaders", lambda *a, **k: None)  # the names a notebook calls the kit by
    monkeypatch.setattr(kit, "Trainer", type("Trainer", (kit.Trainer,), {}))
    assert integrity.changed() == ["kit.Trainer", "kit.loaders.TEST_BATCH", "kit.make_loaders", "kit.train.CHECK_EVERY",
                                   "kit.train.Trainer.peek", "kit.train.Trainer.test_epoch",
                                   "kit.transforms.affine_matrices"]
    monkeypatch.undo()
    assert integrity.changed() == []


def test_result_records_the_change_and_the_checker_refuses_the_run(tmp_path, toy, monkeypatch):
    from test_check import build, rules

    train, test = kit.make_loaders((toy, toy), batch_size=16, device="cpu")
    trainer = kit.Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4)), train, test, epochs=1,
                          verbose=False, progress=False)
    monkeypatch.setattr(kit.Trainer, "test_epoch", lambda self, epoch=0, loader=None: (0.01, 99.5))
    trainer.fit()
    rec = kit.record.result(trainer, budget=None, path=tmp_path / "run.metrics.json")
    assert rec.kit_changed == ["kit.train.Trainer.test_epoch"]
    assert Record.load(tmp_path / "run.metrics.json").kit_changed == ["kit.train.Trainer.test_epoch"]
    clean = build(tmp_path / "clean")
    assert "sanity/kit-changed" not in rules(clean)
    changed = Record.load(clean.with_name("step.metrics.json"))
    changed.kit_changed = ["kit.train.Trainer.test_epoch"]
    changed.save(clean.with_name("step.metrics.json"))
    assert "sanity/kit-changed" in rules(clean)


def test_a_change_undone_before_the_result_is_still_named(toy):
    train, test = kit.make_loaders((toy, toy), batch_size=16, device="cpu")
    trainer = kit.Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4)), train, test, epochs=1,
                          verbose=False, progress=False)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kit.train, "CHECK_EVERY", 1)
        trainer.fit()
    assert kit.train.CHECK_EVERY == 50 and integrity.changed() == ["kit.train.CHECK_EVERY"]
    kit.setup(epochs=1)  # the next notebook run starts clean
    assert integrity.changed() == []


def test_a_trainer_that_does_not_run_the_kits_methods_is_named(toy):
    train, test = kit.make_loaders((toy, toy), batch_size=16, device="cpu")
    model = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))  # noqa: E731
    trainer = kit.Trainer(model(), train, test, epochs=1, verbose=False, progress=False)
    trainer.test_epoch = lambda epoch=0, loader=None: (0.01, 99.5)  # on the instance
    trainer.fit()
    assert integrity.changed() == ["kit.train.Trainer.test_epoch"]
    integrity.forget()

    class Lenient(kit.Trainer):  # a subclass that measures with another instrument
        def _look(self, epoch, batches=None, seen=0):
            return 0.0, float(seen)

    Lenient(model(), train, test, epochs=1, verbose=False, progress=False).fit()
    assert integrity.changed() == ["kit.train.Trainer._look"]


def test_a_record_with_a_malformed_list_of_changes_is_refused(tmp_path):
    from test_check import record

    d = record().to_dict()
    d["kit_changed"] = "everything"
    with pytest.raises(RecordError, match="kit_changed must be a list of names"):
        Record.from_dict(json.loads(json.dumps(d)))


def test_code_that_assigns_to_the_kit_is_read_from_the_notebook_whether_it_ran_or_not():
    cells = ["import kit\nimport kit.train as t\nfrom kit import Trainer, integrity\nfrom kit.callbacks import OneCycle",
             "kit.train.CHECK_EVERY = 25\nt.CHECK_EVERY += 1\nTrainer.test_epoch = lambda *a: (0.0, 99.9)",
             "integrity.look = lambda trainer=None: None  # the run-time check itself",
             "setattr(kit.Trainer, 'fit', None)\ndel kit.plots.curves\nkit.record.SETTINGS['x'] = 1\na, kit.x = 1, 2",
             "OneCycle.pct_start = 0.5\nfrom kit import *\nEMA.after_step = None",
             # the notebook's own objects, made by the kit or not, are its own to change
             "trainer = kit.Trainer(model, train, test)\ntrainer.name = 'mine'\nsetup = kit.setup()\nsetup.epochs = 3\n"
             "d = {}\nd['kit'] = 1\nimport torch\ntorch.backends.cudnn.benchmark = False",
             "%pip install nothing\nthis is not Python"]
    assert sorted(integrity.assigned(cells)) == sorted([
        (1, "kit.train.CHECK_EVERY"), (1, "t.CHECK_EVERY"), (1, "Trainer.test_epoch"), (2, "integrity.look"),
        (3, "kit.Trainer.fit"), (3, "kit.plots.curves"), (3, "kit.record.SETTINGS['x']"), (3, "kit.x"),
        (4, "OneCycle.pct_start"), (4, "EMA.after_step")])


def test_the_checker_refuses_a_notebook_whose_code_assigns_to_the_kit(tmp_path):
    from test_check import build, messages, rules

    clean = build(tmp_path / "clean")
    assert "sanity/kit-assigned" not in rules(clean)
    bypass = build(tmp_path / "bypass", model="model = kit.CompactNet()\nkit.integrity.look = lambda trainer=None: None")
    assert "sanity/kit-assigned" in rules(bypass)
    assert "assigns to the kit (kit.integrity.look)" in messages(bypass)


@pytest.mark.parametrize("code, found", [
    ("from kit import setup\nsetup = setup(epochs=3)\nsetup.epochs = 2", []),  # a name bound again: the notebook's
    ("import kit\nT = kit.Trainer\nT.fit = None", [(0, "T.fit")]),  # another name for the kit's class
    ("from kit import Trainer\nTrainer.fit = None\nTrainer = None", [(0, "Trainer.fit")]),  # in order
    ("import kit\nclass Trainer(kit.Trainer):\n    pass\nTrainer.fit = None", []),  # its own subclass
    ("import kit\nwith open('f') as kit:\n    kit.name = 'x'", []),
    ("import kit\nfor step in range(2):\n    kit.train.CHECK_EVERY = step", [(0, "kit.train.CHECK_EVERY")]),
    ("import kit\ndef hide():\n    kit.Trainer.fit = None", [(0, "kit.Trainer.fit")]),  # inside a function too
])
def test_names_are_followed_in_order(code, found):
    assert integrity.assigned([code]) == found
