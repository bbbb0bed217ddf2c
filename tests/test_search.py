"""The search behind the four-step solution: its candidates and recipes say what they train."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import kit

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "notebooks" / "assignments" / "mnist_4_steps"


@pytest.fixture(scope="module")
def search():
    spec = importlib.util.spec_from_file_location("search", STEPS / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_changes_only_what_step_4_has(search):
    # a misspelt key would be merged into the recipe and trained without anyone reading it
    for name, recipe in search.RECIPES.items():
        assert set(recipe) <= set(search.RECIPE), f"recipe {name!r} sets {set(recipe) - set(search.RECIPE)}"


def test_a_recipes_dropout_reaches_every_block(search):
    model = search.Candidate(search.SPECS["p"], dropout=0.05)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    blocks = [m for m in model.modules() if isinstance(m, kit.ConvBlock)]
    assert len(drops) == len(blocks) == 7 and all(d.p == 0.05 for d in drops)
    assert not any(isinstance(m, nn.Dropout) for m in search.Candidate(search.SPECS["p"]).modules())


def test_the_solutions_model_is_candidate_z(search):
    # step 4's Analysis cites the search's records of "z" as runs of its own model: the same layers, in order
    from kit.bench import solution_model

    net, _ = solution_model()

    def layers(model):  # the weights' shapes and the maps' size (padding leaves the weights alone)
        maps = model.features(torch.zeros(1, 1, 28, 28)).shape
        return [tuple(w.shape) for w in model.features.parameters()], [tuple(w.shape) for w in model.head.parameters()], maps

    assert layers(net()) == layers(search.Candidate(search.SPECS["z"]))
    assert layers(net()) != layers(search.Candidate(search.SPECS["p"]))  # the earlier solution's model


def test_a_larger_models_accuracy_is_judged_apart_from_its_size(search):
    run = {"parameters": 7_844, "last3": [99.49, 99.42, 99.41], "meets": False}
    assert search.verdict(run) == "holds 99.4% (over 5,999 parameters)"
    assert search.verdict({**run, "last3": [99.49, 99.42, 99.39]}).startswith("misses 99.4%")
    assert search.verdict({**run, "parameters": 5_958, "meets": True}) == "meets the target"


def test_shards_share_the_runs_not_the_candidates(search):
    runs = [(c, s) for c in ("y-rot", "z-rot") for s in range(1, 13)]
    shares = [search.shard(runs, i, 6) for i in range(1, 7)]
    assert all(len(share) == 4 for share in shares)  # two candidates keep six processes busy
    assert sorted(r for share in shares for r in share) == sorted(runs)


@pytest.mark.parametrize("bad", ["0/6", "7/6", "2", "a/b"])
def test_a_bad_shard_is_named(search, bad, capsys):
    with pytest.raises(SystemExit):
        search.main(["y-rot", "--shard", bad, "--out", "/nonexistent/records.json"])
    assert f"--shard {bad}: give I/N" in capsys.readouterr().err
