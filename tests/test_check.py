"""Each rule of `python -m kit check`, on notebooks and records built here: honest ones pass, tampered ones fail
naming the rule, the claimed and the recorded value."""
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

import kit
from kit import colab
from kit.check import check
from kit.history import EpochRecord, History, epoch_line
from kit.record import Budget, Environment, Record, Run, markdown

ROOT = Path(__file__).resolve().parent.parent
md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
BUDGET = "budget = kit.Budget(max_parameters=8000, max_epochs=15, target_test_acc=99.0, consistent_epochs=3)"
B = Budget(8000, 15, 99.0, 3)
ENV = Environment.here("cpu")


def history(test=None, epochs=15, train=None):
    test = test or [98.0 + 0.1 * e for e in range(1, epochs + 1)]
    train = train or [97.5 + 0.12 * e for e in range(1, len(test) + 1)]
    return History([EpochRecord(e, round(0.3 / e, 6), train[e - 1], round(0.2 / e, 6), a, 0.01, 2.0)
                    for e, a in enumerate(test, 1)])


def run(name="", test=None, params=7416, budget=B, seed=None, **kw):
    named = re.search(r"seed (\d+)", name)
    seed = seed if seed is not None else int(named.group(1)) if named else 1
    return Run(name=name, parameters=params, trainable_parameters=params, history=history(test, **kw), budget=budget,
               seed=seed, data="mnist", train_images=60_000, test_images=10_000, seconds=30.0,
               settings={"printed_name": name, "lr": 0.01, "callbacks": [], "augment": "None"})


def record(*runs, quick=False):
    return Record(runs=list(runs) or [run()], quick=quick, environment=ENV)


def printed(rec):
    """The epoch lines a notebook that made `rec` printed (one cell per run, in order)."""
    return [code_out("\n".join(epoch_line(e, r.settings.get("printed_name", r.name)) for e in r.history.epochs))
            for r in rec.runs]


def code_out(text, source="trainer.fit()"):
    cell = code(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    cell.execution_count = 1
    return cell


ANALYSIS = "## Analysis\n- It works; next, make it lighter."


def build(folder: Path, rec=None, *, name="step.ipynb", result=None, analysis=ANALYSIS,
          budget=BUDGET, model="model = kit.CompactNet()", lines=None, injected=None, heading="## Result"):
    """An executed notebook (as `kit run` leaves it) with its record beside it; it passes every rule unless told."""
    folder.mkdir(parents=True, exist_ok=True)
    rec = rec or record()
    path = folder / name
    params = code("epochs = 15\nlr = 0.01\nquick = False")
    params.metadata["tags"] = ["parameters"]
    cells = [md("# A step\n\n" + colab.badge(name)), md("## Target\n- Reach 99% with a small model."), params]
    if injected is not None:
        inj = code(injected)
        inj.metadata["tags"] = ["injected-parameters"]
        cells.append(inj)
    model_cell = code(model)
    model_cell.metadata["tags"] = ["model"]
    cells += [code("import kit\n" + budget), model_cell, *(lines if lines is not None else printed(rec))]
    body = result if result is not None else markdown(rec)
    cells += [md(f"{heading}\n{body}"), md(analysis)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["papermill"] = {"input_path": name}
    nbformat.write(nb, path)
    rec.save(folder / f"{path.stem}.metrics.json")
    return path


def rules(path):
    return sorted({v.rule for v in check([path])})


def messages(path):
    return "\n".join(str(v) for v in check([path]))


def test_an_honest_notebook_passes(tmp_path):
    assert check([build(tmp_path)]) == []


def test_what_result_prints_passes_the_checker_unchanged(tmp_path):
    missed = run(test=[98.0] * 15)  # a missed budget, said so by the canonical phrase
    multi = record(run("seed 1"), run("seed 2", test=[98.5 + 0.05 * e for e in range(1, 16)]))
    for i, rec in enumerate((record(), record(missed), multi)):
        assert check([build(tmp_path / str(i), rec)]) == [], markdown(rec)


# --- claims as data ---

def test_a_smoke_run_confirms_no_claim(tmp_path):
    rec = record(quick=True)
    p = build(tmp_path, rec, result=markdown(record()).replace("Smoke", ""))
    assert "claims/unverified" in rules(p)


@pytest.mark.parametrize("words", ["the budget is not missed", "it never misses the budget", "budget fine"])
def test_a_missed_budget_needs_the_fixed_phrase(tmp_path, words):
    rec = record(run(test=[98.0] * 15))
    text = "\n".join(f"- {words}" if line.startswith("- Budget:") else line for line in markdown(rec).splitlines())
    p = build(tmp_path, rec, result=text)
    assert {"claims/verdict", "budget/consistency"} <= set(rules(p))


def test_calling_a_missed_budget_met_is_caught(tmp_path):
    rec = record(run(test=[98.0] * 15))
    p = build(tmp_path, rec, result=markdown(rec).split("- Budget")[0] + "- Budget: met")
    assert "claims/budget" in rules(p)


@pytest.mark.parametrize("line, rule", [
    ("- Best test accuracy: 99.60% (epoch 15)", "claims/best-test"),
    ("- Best train accuracy: 99.40% (epoch 15)", "claims/best-train"),
    ("- Parameters: 7,000", "claims/parameters"),
    ("- Last 3 test accuracies: 99.30, 99.40, 99.99", "claims/last"),
    ("- Best test accuracy: 99.50% (epoch 12)", "claims/best-test-epoch"),
])
def test_every_claim_line_is_compared_not_only_the_first(tmp_path, line, rule):
    p = build(tmp_path, result=markdown(record()) + "\n" + line)
    found = check([p])
    assert rule in {v.rule for v in found}
    assert any("recorded" in v.message for v in found if v.rule == rule)


def test_a_number_the_record_cannot_back_is_flagged(tmp_path):
    p = build(tmp_path, result=markdown(record()) + "\n- The first epoch reached 97.13%.")
    assert any(v.rule == "claims/untied" and "97.13%" in v.message for v in check([p]))


@pytest.mark.parametrize("where, words", [
    ("on a GPU (NVIDIA H200)", ["'on a GPU'", "'NVIDIA H200'"]),  # a GPU run's words over a CPU run
    ("on the CPU, two threads", ["'two threads'"]),
    ("on an Intel Xeon, one thread", ["'Xeon'"]),
])
def test_a_result_must_say_where_its_run_ran(tmp_path, where, words):
    rec = record()
    rec.environment = replace(ENV, device_name="AMD EPYC 7B13", threads=1)
    honest = build(tmp_path / "honest", rec, result=f"Reference run: 15 epochs on a CPU (AMD EPYC, one thread)."
                                                    f"\n\n{markdown(rec)}")
    assert check([honest]) == []
    stale = build(tmp_path / "stale", rec, result=f"Reference run: 15 epochs {where}.\n\n{markdown(rec)}")
    found = [v for v in check([stale]) if v.rule == "claims/where"]
    assert len(found) == 1 and all(w in found[0].message for w in words), found
    assert "ran on AMD EPYC 7B13 (cpu), 1 CPU thread" in found[0].message


GPU = dict(device="cuda", device_name="NVIDIA H100 80GB HBM3", threads=1)
CPU = dict(device="cpu", device_name="AMD EPYC 7B13", threads=2)


@pytest.mark.parametrize("env, words, stale", [
    (GPU, "Reference run on an NVIDIA GPU (H100), one thread.", None),
    (CPU, "No NVIDIA driver here; trained on the CPU with two threads.", None),
    (GPU, "Data loading on the CPU; training on the GPU, with 4 threads for data loading.", None),
    (CPU, "It did not run on a GPU. Slower than on a GPU. An H100 would finish it in a minute.", None),
    (CPU, "See [the H100 run](other.ipynb); Layer L4 and Transform T4 ran on the CPU.", None),
    (dict(CPU, device_name="arm"), "On an Apple M2 CPU.", None),  # a CPU torch names no model of
    (dict(GPU, device_name="Tesla T4"), "On Colab's T4 GPU.", None),
    (dict(GPU, device_name="NVIDIA A100-SXM4-40GB"), "On an A100, nvidia a100 that is.", None),
    (GPU, "A CPU-only run.", "'CPU-only'"),
    (GPU, "Reference run on a single CPU.", "'on a single CPU'"),
    (CPU, "Trained on <b>a GPU</b>.", "'on a GPU'"),
    (CPU, "It ran single-threaded.", "'single-threaded'"),
    (CPU, "With eight threads.", "'eight threads'"),
    (dict(GPU, device_name="NVIDIA GeForce RTX 3090"), "On an NVIDIA GeForce RTX 4090.", "RTX 4090"),
    (dict(GPU, device_name="NVIDIA A100-SXM4-40GB"), "On an A10.", "'A10'"),
    (GPU, "Trained on MPS.", "'on MPS'"),
    (CPU, "On an intel xeon.", "'xeon'"),
    (dict(CPU, device_name="Intel(R) Core(TM) i7-10750H"), "On an Intel Core i7, two threads.", None),
    (dict(GPU, device_name="NVIDIA A100-SXM4-40GB"), "Augmentation ran on the CPU, so the GPU waited for data.", None),
    (dict(GPU, device_name="Tesla T4"), "Data loaded with 2 threads.", None),  # data loading's threads
    (GPU, "On the H100, whereas the original was on an A100.", None),
    (CPU, "15 epochs on a GPU (NVIDIA H100), without AMP.", "'on a GPU'"),  # the hedge sets aside its clause only
])
def test_where_a_run_ran_is_read_from_plain_statements_only(env, words, stale):
    from kit.claims import check_where

    rec = record()
    rec.environment = replace(ENV, **env)
    found = check_where(words, rec)
    assert (found == []) if stale is None else (stale in found[0][1]), found


FP32_EAGER, BF16_GRAPH = dict(amp=None, graph=False), dict(amp="bfloat16", graph=True)


@pytest.mark.parametrize("settings, words, stale", [
    ([FP32_EAGER], "15 epochs in fp32 with the eager step, the norms in fp32.", None),
    ([FP32_EAGER], "Trained without AMP, not in bf16 as the GPU run was.", None),  # a hedge denies or compares
    ([FP32_EAGER], "fp32, no autocast; the CUDA graph off (KIT_GRAPH=0).", None),  # or says it was off
    ([FP32_EAGER], "On the CPU: CUDA graphs need a GPU, and bf16 autocast requires one too.", None),
    ([FP32_EAGER], "(bfloat16 autocast and the CUDA-graph step, the Trainer's defaults there)",
     "'bfloat16', 'autocast', 'CUDA-graph'"),  # words left from the earlier GPU run
    ([FP32_EAGER], "Mixed precision throughout.", "'Mixed precision'"),
    ([BF16_GRAPH], "bf16 autocast, the captured step replayed as a CUDA graph.", None),
    ([BF16_GRAPH], "bf16, eager.", "'eager'"),
    ([FP32_EAGER, BF16_GRAPH], "One run eager in fp32, the other captured in bf16.", None),  # each a run's
    ([dict(amp="bfloat16")], "bf16 autocast, eager.", None),  # an older record keeps no step: not judged on it
    ([{}], "bf16 and the CUDA graph.", None),
])
def test_a_result_must_say_how_its_runs_trained(settings, words, stale):
    from kit.claims import check_how

    rec = record(*(run(f"seed {i}") for i in range(1, len(settings) + 1)))
    for r, these in zip(rec.runs, settings):
        r.settings.update(these)
    found = check_how(words, rec)
    assert (found == []) if stale is None else (found[0][0] == "claims/how" and stale in found[0][1]), found


def test_a_stale_how_fails_the_check_naming_the_setting(tmp_path):
    rec = record()
    rec.runs[0].settings.update(FP32_EAGER)
    found = check([build(tmp_path, rec, result=f"Reference run in bf16 autocast.\n\n{markdown(rec)}")])
    assert [v.rule for v in found] == ["claims/how"] and "(its runs: fp32)" in found[0].message, found


def test_a_device_s_own_name_is_no_figure(tmp_path):
    rec = record()
    rec.environment = replace(ENV, device="cuda", device_name="NVIDIA GeForce RTX 3060 Laptop GPU", threads=1)
    assert check([build(tmp_path, rec)]) == []  # '15 epochs in 30 s on NVIDIA GeForce RTX 3060 ...': a name
    words = f"On my laptop's GPU (RTX 3060), PyTorch 2.3 and Python 3.10.\n\n{markdown(rec)}"
    assert check([build(tmp_path / "words", rec, result=words)]) == []


def test_a_gpu_runs_result_must_not_say_cpu(tmp_path):
    rec = record()
    rec.environment = replace(ENV, device="cuda", device_name="NVIDIA H100 80GB HBM3", threads=1)
    ok = "Reference run: on one GPU (an H100), not on a CPU, one thread."
    assert check([build(tmp_path / "a", rec, result=f"{ok}\n\n{markdown(rec)}")]) == []
    found = check([build(tmp_path / "b", rec, result=f"Reference run: on the CPU (AMD EPYC).\n\n{markdown(rec)}")])
    assert [v.rule for v in found] == ["claims/where"] and "'on the CPU', 'EPYC'" in found[0].message


def test_an_html_comment_neither_claims_nor_hides(tmp_path):
    text = markdown(record()).replace("- Best test accuracy", "<!-- - Best test accuracy: 99.50% (epoch 15) -->\n"
                                                           "- Best test accuracy", 1)
    assert check([build(tmp_path / "a", result=text)]) == []
    lie = markdown(record()).replace("99.50% (epoch 15)", "99.90% (epoch 15)")
    hidden = lie.replace("- Best test", "<!-- Best test accuracy: 99.50% (epoch 15) -->\n- Best test", 1)
    assert "claims/best-test" in rules(build(tmp_path / "b", result=hidden))


def test_a_false_figure_in_the_analysis_is_flagged(tmp_path):
    p = build(tmp_path, analysis="## Analysis\n- Test accuracy ends at 99.71%, far above the target.")
    assert any(v.rule == "claims/analysis" and "99.71%" in v.message for v in check([p]))


@pytest.mark.parametrize("written", ["98.10%-99.95%", "98.10/99.95%", "99,95%", "99\\.95%", "**99**.95%",
                                     "`99.95%`", "99.95 percent", "9k parameters", "a test loss of 0.0001", "0.9970"])
def test_a_figure_written_another_way_is_still_read(tmp_path, written):
    p = build(tmp_path, analysis=f"## Analysis\n- The run reached {written} in the end.")
    assert "claims/analysis" in rules(p), written


@pytest.mark.parametrize("written", ["98.10%-99.50%", "`99.50%`", "99,50%", "7.4k parameters", "0.9950", "CIFAR-10",
                                     "a step-4 model", "`lr=0.2`"])
def test_a_true_figure_or_a_name_written_another_way_passes(tmp_path, written):
    assert check([build(tmp_path, analysis=f"## Analysis\n- The run reached {written} in the end.")]) == []


def test_an_analysis_may_cite_a_linked_report(tmp_path):
    build(tmp_path, record(run(test=[96.0 + 0.1 * e for e in range(1, 16)])), name="earlier.ipynb")
    ok = "## Analysis\n- Up from 96.70% in [the earlier step](earlier.ipynb) to 99.50% here."
    assert check([build(tmp_path, name="step.ipynb", analysis=ok)]) == []
    unlinked = "## Analysis\n- Up from 96.70% in the earlier step to 99.50% here."
    assert "claims/analysis" in rules(build(tmp_path, name="step.ipynb", analysis=unlinked))


@pytest.mark.parametrize("analysis", [
    "- Up from 96.70% in [the earlier step](earlier.ipynb \"step 3\") to 99.50% here.",  # a link with a title
    "- Up from 96.70% in [the earlier step][earlier] to 99.50% here.\n\n[earlier]: earlier.ipynb",  # by reference
    "- Up from [the earlier step](earlier.ipynb) to here:\n  - 96.70% there,\n  - 99.50% here.",  # sub-bullets
    "- Up from 96.70% in [the earlier step](<earlier.ipynb> 'step 3') to 99.50% here.",  # <target>, 'title'
    "- Up from 96.70% in [earlier] to 99.50% here.\n\n[earlier]: earlier.ipynb",  # a shortcut reference
    "- Up from 96.70% in [the earlier step](earl%69er.ipynb) to 99.50% here.",  # a URL-encoded target
    "- Up from 96.70% in <a href=\"earlier.ipynb\">the earlier step</a> to 99.50% here.",  # an HTML link
])
def test_an_analysis_may_cite_a_linked_report_as_markdown_allows(tmp_path, analysis):
    build(tmp_path, record(run(test=[96.0 + 0.1 * e for e in range(1, 16)])), name="earlier.ipynb")
    assert check([build(tmp_path, name="step.ipynb", analysis="## Analysis\n" + analysis)]) == []


@pytest.mark.parametrize("hidden", ["99<i></i>.97%", "99\u200b.97%", "9&#57;.97%", "99&period;97%"])
def test_a_figure_hidden_from_the_reader_s_eye_in_markup_is_still_read(tmp_path, hidden):
    assert "claims/analysis" in rules(build(tmp_path, analysis=f"## Analysis\n- It reached {hidden} at best."))


def test_a_duplicate_reference_label_links_where_markdown_does(tmp_path):
    build(tmp_path, record(run(test=[96.0 + 0.1 * e for e in range(1, 16)])), name="earlier.ipynb")
    build(tmp_path, name="other.ipynb")
    first = "## Analysis\n- Up from 96.70% in [earlier] to 99.50%.\n\n[earlier]: other.ipynb\n[earlier]: earlier.ipynb"
    assert "claims/analysis" in rules(build(tmp_path, name="step.ipynb", analysis=first))  # the first one counts


def test_a_percentage_ties_only_to_an_accuracy_or_what_derives_from_one(tmp_path):
    honest = run()
    honest.settings["architecture"] = "Sequential(Hardtanh(min_val=-99.97, max_val=99.97), CompactNet())"
    loss = f"{honest.history[6].test_loss:.3f}"  # epoch 7's test loss, 0.029
    for claim in ("99.97%", f"{loss}%"):  # a number of the layers, a loss: neither is a percentage
        found = rules(build(tmp_path / claim, record(honest), analysis=f"## Analysis\n- It reached {claim}."))
        assert "claims/analysis" in found, claim
    ok = f"## Analysis\n- Test loss {loss} in epoch 7; 98.70% then, 99.50% at the end."  # each as what it is
    honest.settings["architecture"] += " Dropout2d(p=0.25)"
    ok += "\n- A dropout of 25% kept it from overfitting."  # a rate of the model, written as a percentage
    assert check([build(tmp_path / "ok", record(honest), analysis=ok)]) == []


def test_a_figure_under_a_heading_is_judged_there_wherever_it_is_written(tmp_path):
    heading = build(tmp_path / "heading", heading="## Result (99.91% at best)")
    assert "claims/untied" in rules(heading)
    below = build(tmp_path / "below", analysis="## Analysis (99.50% at best)\n- It works.")
    nb = nbformat.read(below, 4)
    nb.cells.append(md("- A note on the Analysis: 99.89% on a second look."))  # a cell below the Analysis, unheaded
    nbformat.write(nb, below)
    assert "99.89%" in messages(below) and "claims/analysis" in rules(below)


@pytest.mark.parametrize("analysis", [
    "- At best 0.50% of the test digits are misread.",  # an error rate: 100 - 99.50
    "- The last three epochs average 99.40%.",  # the mean of the epochs the budget looks at
    "- The model uses 92.7% of the budget's parameters.",  # 7,416 of 8,000
    "- A dropout of 10% and label smoothing of 10% kept it from overfitting.",  # rates of the model and the loss
    "- Up 3.20 points on [the earlier step](earlier.ipynb), with 61.8% of its parameters (4,584 fewer).",
    "- A note:\n\n  the gain is [the earlier step](earlier.ipynb)'s 96.30% against 99.50% here.",  # a bullet's paragraph
    "- Ioffe and Szegedy (arXiv:1502.03167) explain why batch norm helps; doi:10.5555/3045118.3045167.",
    "- A learning rate of 1.0×10<sup>-2</sup> (1e-2, 1.0 × 10⁻²) throughout.",  # scientific notation, 0.01
])
def test_figures_an_honest_analysis_derives_pass(tmp_path, analysis):
    earlier = run(test=[95.0 + 0.1 * e for e in range(1, 16)], params=12_000, budget=None)
    build(tmp_path, record(earlier), name="earlier.ipynb")
    honest = run()
    honest.settings.update(architecture="Sequential(Conv2d(1, 8, stride=(1, 1)), Dropout2d(p=0.1))",
                           label_smoothing=0.1)
    assert check([build(tmp_path, record(honest), name="step.ipynb", analysis="## Analysis\n" + analysis)]) == []


@pytest.mark.parametrize("analysis", [
    "- Test accuracy reached 100% in epoch 15.",  # a stride of 1 is not 100%
    "- On an AMD EPYC, test accuracy reached 99.97% in epoch 15.",  # a device's name hides nothing after it
    "- A learning rate of 3×10⁻⁴ throughout.",  # read as 0.0003, which the run never used
])
def test_a_figure_beside_a_device_or_a_layer_setting_is_still_judged(tmp_path, analysis):
    honest = run()
    honest.settings["architecture"] = "Sequential(Conv2d(1, 8, stride=(1, 1)), BatchNorm2d(8, momentum=0.1))"
    assert "claims/analysis" in rules(build(tmp_path, record(honest), analysis="## Analysis\n" + analysis))


@pytest.mark.parametrize("heading", ["## 3. Result", "## Result: reference run", "## Result — seed 1",
                                     "## <a id='result'></a>Result"])
def test_a_numbered_or_subtitled_heading_is_its_section(tmp_path, heading):
    assert check([build(tmp_path, heading=heading)]) == []


def test_markdown_below_the_result_is_judged_as_analysis(tmp_path):
    path = build(tmp_path)
    nb = nbformat.read(path, 4)
    at = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Result"))
    nb.cells.insert(at + 1, md("**Figure 3.** The first 25 of 20 misclassified images are shown below."))
    nb.cells.append(md("## References\n- Ioffe and Szegedy, arXiv:1502.03167."))
    nbformat.write(nb, path)
    assert check([path]) == []
    nb.cells.append(md("## Discussion\n- A second look gave 99.89%."))
    nbformat.write(nb, path)
    assert "claims/analysis" in rules(path)


def test_a_result_in_other_honest_words_is_read(tmp_path):
    words = markdown(record()).replace("- Parameters: 7,416", "- The model has 7,416 parameters.")
    words = words.replace("Best test accuracy: 99.50%", "Best test accuracy was 99.50%")
    assert "has 7,416 parameters" in words and "accuracy was 99.50%" in words
    assert check([build(tmp_path, result=words)]) == []
    false = words.replace("has 7,416 parameters", "has 6,416 parameters")
    assert "claims/parameters" in rules(build(tmp_path / "false", result=false))


@pytest.mark.parametrize("heading", ["**Result**", "## Results", "## Result (reference run)", "### Result:"])
def test_honest_headings_are_read(tmp_path, heading):
    assert check([build(tmp_path, heading=heading)]) == []


def test_a_best_reached_twice_may_cite_the_later_epoch(tmp_path):
    accs = [98.0] * 12 + [99.5, 99.3, 99.5]
    rec = record(run(test=accs))
    text = markdown(rec).replace("99.50% (epoch 13)", "99.50% (epoch 15)")
    assert "(epoch 15)" in text and check([build(tmp_path, rec, result=text)]) == []


def test_fractions_and_epoch_of_n_are_read(tmp_path):
    text = markdown(record()).replace("99.50% (epoch 15)", "0.9950 (epoch 15 of 15)")
    assert check([build(tmp_path, result=text)]) == []


def test_each_run_of_several_must_be_reported(tmp_path):
    rec = record(run("seed 1"), run("seed 2"))
    text = "\n".join(line for line in markdown(rec).splitlines() if not line.startswith("| seed 2"))
    assert "claims/runs" in rules(build(tmp_path, rec, result=text))


# --- metrics tied to their evidence ---

def _edit(path, change):
    mp = path.with_name(f"{path.stem}.metrics.json")
    d = json.loads(mp.read_text())
    change(d["runs"][0])
    mp.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("edit", [
    lambda r: r["history"][-1].update(test_acc=99.9),  # best accuracy raised
    lambda r: r.update(history=r["history"][:10]),  # epochs lowered
    lambda r: r["history"][3].update(train_loss=0.01),  # a loss made smoother
])
def test_a_record_edited_by_hand_disagrees_with_the_printed_epochs(tmp_path, edit):
    p = _edit(build(tmp_path), edit)
    assert "evidence/epoch-lines" in rules(p)


def test_a_nan_run_made_to_look_clean_is_caught(tmp_path):
    rec = record()
    lines = printed(rec)
    lines[0].outputs[0]["text"] = lines[0].outputs[0]["text"].replace("train loss 0.0750", "train loss nan", 1)
    p = build(tmp_path, rec, lines=lines)
    assert "evidence/epoch-lines" in rules(p)


def test_injected_parameters_are_named(tmp_path):
    p = build(tmp_path, injected='quick = False\ndevice = "auto"\nlr = 0.2\nepochs = 15')
    found = [v for v in check([p]) if v.rule == "evidence/parameters"]
    assert found and "lr = 0.2 (the notebook's own: 0.01)" in found[0].message
    assert check([build(tmp_path / "b", injected='quick = False\ndevice = "auto"')]) == []


def test_a_run_the_notebook_printed_but_the_record_lost_is_caught(tmp_path):
    rec = record()
    warm_up = record(run(epochs=20, budget=None))  # a Trainer no variable kept, say, and so left out
    assert "evidence/epoch-lines" in rules(build(tmp_path, rec, lines=printed(warm_up) + printed(rec)))


def setup_line(smoke=False, env=ENV):
    what = "smoke run: 1 epoch on 2,000 images of each split (its numbers are not results)" if smoke else "15 epochs"
    return code_out(f"{what}; seed 0; {env.describe()}", source="setup = kit.setup()")


def test_a_smoke_run_recorded_as_a_full_one_is_caught(tmp_path):
    assert check([build(tmp_path / "honest", lines=[setup_line()] + printed(record()))]) == []
    smoke = build(tmp_path / "smoke", lines=[setup_line(smoke=True)] + printed(record()))
    assert "evidence/quick" in rules(smoke)
    injected = build(tmp_path / "injected", injected="quick = True")
    found = [v for v in check([injected]) if v.rule == "evidence/parameters"]
    assert found and "smoke run" in found[0].message


def test_the_record_names_the_machine_the_notebook_printed(tmp_path):
    elsewhere = replace(ENV, device="cuda", device_name="NVIDIA H100 80GB HBM3")
    p = build(tmp_path, lines=[setup_line(env=elsewhere)] + printed(record()))
    found = [v for v in check([p]) if v.rule == "evidence/environment"]
    assert found and "NVIDIA H100 80GB HBM3 (cuda)" in found[0].message


def test_the_record_holds_its_runs_to_the_declared_budget(tmp_path):
    unheld = record(run(budget=None))
    assert "budget/declared" in rules(build(tmp_path / "none", unheld, result=markdown(record())))
    looser = record(run(budget=Budget(80000, 15, 90.0, 3)))
    found = [v for v in check([build(tmp_path / "looser", looser)]) if v.rule == "budget/declared"]
    assert found and "declares Budget(max_parameters=8000" in found[0].message


def test_the_record_counts_the_model_its_cells_build(tmp_path):
    source, report = _course(tmp_path)
    assert "budget/parameters" not in rules(source)  # kit.CompactNet(): 7,416 parameters, as recorded
    mp = report.with_name("step.metrics.json")
    mp.write_text(mp.read_text().replace('"parameters": 7416', '"parameters": 6416'))
    found = [v for v in check([source]) if v.rule == "budget/parameters"]
    assert found and "6,416" in found[0].message and "build one of 7,416" in found[0].message


@pytest.mark.parametrize("change, words", [
    (lambda r: r.update(parameters="7416"), "parameters must be a whole number"),
    (lambda r: r["history"][0].update(test_acc=None), "epoch 1 of its history"),
    (lambda r: r["history"][0].update(test_acc="98.5"), "epoch 1 of its history"),
    (lambda r: r.update(history=[]), "non-empty list of epochs"),
    (lambda r: r["budget"].update(target_test_acc=150), "target in (0, 100]"),
    (lambda r: r["budget"].pop("max_epochs"), "budget must be an object"),
    (lambda r: r["settings"].update(model_ids=None), "settings.model_ids must be a list"),
    (lambda r: r["settings"].update(callbacks=5), "settings.callbacks must be a list of strings"),
    (lambda r: r["settings"].update(architecture={}), "settings.architecture must be a string"),
])
def test_a_record_of_the_wrong_types_is_named_and_the_rest_still_checked(tmp_path, change, words):
    bad, good = _edit(build(tmp_path / "bad"), change), build(tmp_path / "good")
    found = check([bad, good])
    assert {v.path for v in found} == {bad} and found[0].rule == "record/unreadable"  # the good one still passes
    assert words in found[0].message and "step.metrics.json" in found[0].message


def test_an_unreadable_report_or_step_is_named(tmp_path):
    source, report = _course(tmp_path)
    report.write_text("{not json")
    assert "report/unreadable" in rules(source)
    folder = _submission(tmp_path / "sub")
    (folder / "step2.ipynb").write_text("{}")
    (folder / "step4.ipynb").write_text("{not json")
    assert {"structure/readable"} <= {v.rule for v in check([folder])}


def test_every_trainer_counts_toward_the_epochs(tmp_path):
    main, warm_up = run(), run("unreported trainer 1", budget=None, epochs=3)
    main.settings.update(model_id=1, model_ids=[1, 2])
    warm_up = replace(warm_up, reported=False, settings={**warm_up.settings, "model_id": 1, "printed_name": ""})
    rec = Record(runs=[main, warm_up], quick=False, environment=ENV)
    p = build(tmp_path, rec, result=markdown(record()))
    assert any(v.rule == "budget/epochs" and "18 epochs" in v.message for v in check([p]))
    stray = replace(warm_up, settings={**warm_up.settings, "model_id": 99})
    p = build(tmp_path / "b", Record(runs=[main, stray], quick=False, environment=ENV), result=markdown(record()))
    assert "budget/unreported" in rules(p)


def test_every_parameter_counts(tmp_path):
    rec = record(run(params=9000))  # 1,584 of them frozen: the budget counts them all
    rec.runs[0].trainable_parameters = 7416
    as_if_trainable = markdown(record()).replace("7,416", "7,416 trainable")  # what counting trainable ones would say
    assert {"budget/parameters", "claims/budget"} <= set(rules(build(tmp_path, rec, result=as_if_trainable)))


def source_copy(path):
    """The notebook as its author keeps it: no outputs, no papermill marks (its record stays beside it)."""
    nb = nbformat.read(path, 4)
    del nb.metadata["papermill"]
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.write(nb, path)
    return path


def test_model_cells_run_in_another_process_in_an_empty_folder(tmp_path, monkeypatch):
    import kit.check

    monkeypatch.chdir(tmp_path)
    side_effect = "import pathlib\npathlib.Path('touched').write_text('x')\nmodel = kit.CompactNet()"
    source = source_copy(build(tmp_path / "nb", model=side_effect))
    check([source])
    assert not (tmp_path / "touched").exists() and not (tmp_path / "nb" / "touched").exists()
    monkeypatch.setattr(kit.check, "MODEL_TIMEOUT", 8)
    stuck = source_copy(build(tmp_path / "stuck", model="while True:\n    pass"))
    assert any(v.rule == "budget/parameters" and "took over 8 s" in v.message for v in check([stuck]))


# --- sanity, for every run ---

@pytest.mark.parametrize("settings, words", [
    (dict(trained_on=[[False, 10_000]]), "trained on a loader made for testing"),
    (dict(tested_on=[[True, 60_000]]), "tested on a loader made for training"),
    (dict(tested_on=[[False, 300]]), "tested on 300 images; a full run tests on the whole mnist test split"),
])
def test_a_run_trained_or_tested_on_the_wrong_data_is_caught(tmp_path, settings, words):
    rec = record()
    rec.runs[0].settings.update(settings)
    found = [v for v in check([build(tmp_path, rec)]) if v.rule == "sanity/data"]
    assert found and words in found[0].message
    honest = record()
    honest.runs[0].settings.update(trained_on=[[True, 60_000]], tested_on=[[False, 10_000]])
    assert check([build(tmp_path / "honest", honest)]) == []


def test_a_run_named_for_a_seed_was_drawn_with_it(tmp_path):
    rec = record(run("seed 1"), run("seed 2", seed=1))  # both drawn with seed 1
    found = [v for v in check([build(tmp_path, rec)]) if v.rule == "claims/seed"]
    assert len(found) == 1 and "named for seed 2, but its data were drawn with seed 1" in found[0].message


def test_epochs_its_model_trained_outside_the_history_count(tmp_path):
    rec = record()
    rec.runs[0].settings["model_epochs"] = 18  # a warm-up reported as a run of its own, a history set back ...
    found = [v for v in check([build(tmp_path, rec)]) if v.rule == "budget/epochs"]
    assert found and "18 epochs" in found[0].message


def test_every_table_row_and_line_about_a_run_is_judged(tmp_path):
    rec = record(run("seed 1"), run("seed 2", test=[98.5 + 0.05 * e for e in range(1, 16)]))
    true = markdown(rec)
    false_line = "\n- seed 2: best test accuracy 99.95% (epoch 15)"
    assert "claims/best-test" in rules(build(tmp_path / "prose", rec, result=true + false_line))
    table = next(line for line in true.splitlines() if line.startswith("| seed 2"))
    header = [line for line in true.splitlines() if line.startswith("|")][:2]
    forged = "\n".join([*header, table.replace("99.25", "99.95", 1)]) + "\n\n" + true
    assert "99.25" in table and "claims/best-test" in rules(build(tmp_path / "table", rec, result=forged))


def test_100_percent_is_never_a_rounding(tmp_path):
    p = build(tmp_path, analysis="## Analysis\n- Train accuracy reaches 100% by the end.")  # 99.30% recorded
    assert "claims/analysis" in rules(p)


def test_nan_loss_and_accuracy_beside_it(tmp_path):
    rec = record(run("seed 1"), run("seed 2"))
    rec.runs[1].history.epochs[4] = replace(rec.runs[1].history[4], train_loss=float("nan"))
    found = {v.rule for v in check([build(tmp_path, rec)])}
    assert {"sanity/non-finite-loss", "sanity/accuracy-with-nan-loss"} <= found


def test_accuracy_of_100_or_more_and_off_the_grid(tmp_path):
    rec = record(run(test=[99.0] * 14 + [100.0]))
    assert "sanity/perfect-accuracy" in rules(build(tmp_path / "a", rec))
    rec = record(run(test=[99.0] * 14 + [99.123]))  # 9,912.3 of 10,000 images
    assert "sanity/off-grid" in rules(build(tmp_path / "b", rec))


# --- reports and the kit's numbers ---

def test_a_report_made_by_older_numbers_is_stale(tmp_path):
    rec = record()
    rec.environment = replace(ENV, numbers=0)
    assert "report/stale-kit" in rules(build(tmp_path, rec))


def test_a_broken_record_is_named(tmp_path):
    p = build(tmp_path)
    p.with_name("step.metrics.json").write_text("[1, 2]")
    found = [v for v in check([p]) if v.rule == "record/unreadable"]
    assert found and "must be a JSON object" in found[0].message


# --- structure ---

def test_sections_missing_out_of_order_empty_or_placeholder(tmp_path):
    p = build(tmp_path, result="- Parameters: TODO")
    assert "structure/sections" in rules(p)
    nb = nbformat.read(p, 4)
    nb.cells = [c for c in nb.cells if not c.source.startswith("## Analysis")]
    nbformat.write(nb, p)
    assert any("no Markdown cell titled 'Analysis'" in v.message for v in check([p]))


def test_budget_must_be_declared_once_with_literals(tmp_path):
    assert "budget/declared" in rules(build(tmp_path / "a", budget="budget = kit.Budget(max_parameters=n)"))
    assert "budget/declared" in rules(build(tmp_path / "b", budget=""))


def test_a_folder_without_notebooks_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert rules(tmp_path / "empty") == ["structure/readable"]


def test_cli_prints_path_rule_message_and_exits_1(tmp_path):
    p = build(tmp_path, result=markdown(record()).replace("99.50%", "99.90%"))
    done = subprocess.run([sys.executable, "-m", "kit", "check", str(p)], capture_output=True, text=True)
    assert done.returncode == 1 and f"{p}: claims/best-test: claims 99.90%, recorded 99.50%" in done.stdout
    ok = subprocess.run([sys.executable, "-m", "kit", "check", str(build(tmp_path / "ok"))], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == ""


def test_the_repository_passes_its_own_checker():
    found = check([ROOT / "notebooks", ROOT / "reports"])
    assert found == [], "\n".join(map(str, found))


# --- the remaining structure, evidence and report rules ---

def _edit_notebook(path, change):
    nb = nbformat.read(path, 4)
    change(nb)
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("repository, target, holds", [
    ("alice/dl-homework", "notebooks/assignments/my_submission/step1.ipynb", True),  # the student's own repository
    (colab.REPOSITORY, "notebooks/assignments/mnist_4_steps/template/step1.ipynb", True),  # the template it came from
    ("alice/dl-homework", "notebooks/assignments/my_submission/step2.ipynb", False),  # another step
    (colab.REPOSITORY, "notebooks/assignments/mnist_4_steps/solution/step1.ipynb", False),  # the instructor's answer
])
def test_a_students_copy_may_open_itself_anywhere_but_no_other_notebook(tmp_path, repository, target, holds):
    copy = tmp_path / "my_submission"
    badge = "# A step\n\n" + colab.badge("x.ipynb").replace(colab.url("x.ipynb"), colab.url(target, repository))
    p = _edit_notebook(build(copy, name="step1.ipynb"), lambda nb: setattr(nb.cells[0], "source", badge))
    (copy / "assignment.json").write_text('{"assignment": "mnist_4_steps"}')
    assert ("structure/colab-badge" not in rules(p)) == holds, messages(p)


def test_exactly_one_parameters_cell(tmp_path):
    p = _edit_notebook(build(tmp_path), lambda nb: nb.cells[3].metadata.setdefault("tags", []).append("parameters"))
    assert "structure/parameters" in rules(p)


def test_a_badge_missing_or_opening_another_notebook_is_caught(tmp_path):
    p = _edit_notebook(build(tmp_path / "a"), lambda nb: setattr(nb.cells[0], "source", "# A step"))
    assert "structure/colab-badge" in rules(p)
    other = "# A step\n\n" + colab.badge("other.ipynb")
    p = _edit_notebook(build(tmp_path / "b"), lambda nb: setattr(nb.cells[0], "source", other))
    assert "structure/colab-badge" in rules(p) and "other.ipynb" in messages(p)


def test_the_set_up_cell_installs_the_kits_own_repository(tmp_path):
    other = code("%pip install -q git+https://github.com/someone/else@main")
    p = _edit_notebook(build(tmp_path), lambda nb: nb.cells.insert(3, other))
    assert "structure/colab-install" in rules(p) and "someone/else@main" in messages(p)


def test_a_result_without_the_parameters_is_incomplete(tmp_path):
    rec = record()
    text = "\n".join(line for line in markdown(rec).splitlines() if not line.startswith("- Parameters"))
    assert "claims/missing" in rules(build(tmp_path, rec, result=text))


def _course(tmp_path):
    """A repository's layout: a source notebook under notebooks/, its run under reports/."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "kit").mkdir()
    report = _edit_notebook(build(tmp_path / "reports"),
                            lambda nb: setattr(nb.cells[0], "source", colab.badge("notebooks/step.ipynb")))
    source = tmp_path / "notebooks" / "step.ipynb"
    source.parent.mkdir()
    shutil.copy(report, source)
    return source_copy(source), report


def test_a_source_notebook_is_held_to_its_report(tmp_path):
    source, report = _course(tmp_path)
    assert not [v for v in check([source]) if v.rule.startswith(("report/", "structure/", "evidence/"))]
    _edit_notebook(source, lambda nb: nb.cells[-1].__setitem__("source", nb.cells[-1].source + " And more."))
    assert "report/stale-text" in rules(source)
    _edit_notebook(source, lambda nb: nb.cells[4].__setitem__("source", nb.cells[4].source + "\nprint('changed')"))
    assert "report/stale-code" in rules(source)


@pytest.mark.parametrize("named, holds", [("../notebooks/step.ipynb", True), ("step.ipynb", True),
                                          ("../../../home/ta/course/notebooks/step.ipynb", False),
                                          ("/home/ta/course/notebooks/step.ipynb", False)])
def test_a_report_names_its_notebook_without_the_machines_folders(tmp_path, named, holds):
    source, report = _course(tmp_path)
    _edit_notebook(report, lambda nb: nb.metadata.setdefault("papermill", {}).__setitem__("input_path", named))
    assert ("report/local-path" not in rules(source)) == holds


def test_a_source_notebook_carries_no_outputs(tmp_path):
    source, report = _course(tmp_path)
    out = nbformat.v4.new_output("stream", name="stdout", text="hi\n")
    _edit_notebook(source, lambda nb: nb.cells[4].__setitem__("outputs", [out]))
    assert "structure/outputs" in rules(source)


def test_a_record_without_its_executed_notebook_ties_to_nothing(tmp_path):
    source, report = _course(tmp_path)
    report.unlink()
    assert "evidence/missing" in rules(source)


# --- an assignment's own rules, from the kit's copy ---

STRICT = "budget = kit.Budget(max_parameters=9999, max_epochs=15, target_test_acc=99.4, consistent_epochs=3)"


def _submission(folder, steps=4, rf=True, budget=STRICT, shown=True):
    """`rf`: a receptive-field cell; `shown`: its table in the cell's output, as a run leaves it."""
    folder.mkdir(parents=True)
    (folder / "assignment.json").write_text((ROOT / "kit" / "assignments" / "mnist_4_steps.json").read_text())
    call = "print(kit.rf.receptive_field(model, (1, 28, 28)))"
    for i in range(1, steps + 1):
        rec = record(run(test=[99.0] * 12 + [99.5] * 3, budget=Budget(9999, 15, 99.4, 3)))
        table = [] if not rf else [code_out(str(kit.rf.receptive_field(kit.CompactNet(), (1, 28, 28))), call)
                                   if shown else code(call)]
        build(folder, rec, name=f"step{i}.ipynb", budget=budget, lines=printed(rec) + table)
    return folder


def test_a_submission_is_judged_by_the_assignments_rules(tmp_path):
    assert not [v for v in check([_submission(tmp_path / "ok")]) if v.rule.startswith("assignment/")]
    assert "assignment/steps" in {v.rule for v in check([_submission(tmp_path / "three", steps=3)])}
    assert "assignment/rf-table" in {v.rule for v in check([_submission(tmp_path / "no_rf", rf=False)])}
    unshown = [v for v in check([_submission(tmp_path / "unshown", shown=False)]) if v.rule == "assignment/rf-table"]
    assert len(unshown) == 4 and "showed no table" in unshown[0].message  # a cell that ran and printed nothing
    assert "assignment/budget" in {v.rule for v in check([_submission(tmp_path / "loose", budget=BUDGET)])}
    unknown = _submission(tmp_path / "unknown")
    (unknown / "assignment.json").write_text('{"assignment": "mnist_3_steps"}')
    assert "assignment/rules" in {v.rule for v in check([unknown])}


def test_every_rule_the_checker_names_has_a_test():
    named = set()
    for source in (ROOT / "kit").glob("*.py"):
        named |= set(re.findall(r'"((?:structure|budget|claims|evidence|report|record|sanity|assignment)/[a-z-]+)"',
                                source.read_text()))
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert len(named) > 20 and sorted(r for r in named if f'"{r}"' not in tests) == []
