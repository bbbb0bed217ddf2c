"""`python -m kit bench` times the paths and records what it measured (it asserts no speed)."""
import json
from pathlib import Path

import pytest

from kit.bench import AUGMENT, BATCH, SOLUTION, bench, solution_model


def test_bench_times_each_path_and_keeps_a_section_per_device(mnist_root, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    (tmp_path / "results.json").write_text(json.dumps({"NVIDIA H200 (CUDA)": {"what": "earlier", "rows": [
        {"path": "classic", "train_seconds": 1.0, "first_epoch": 1.0, "test_seconds": 1.0, "total": 3.0,
         "images_per_second": 100, "test_accs": [99.0], "measured": "then"}]}}))
    timings = bench("cpu", epochs=1, paths=["classic", "device"], limit=512, root=mnist_root, results=out)
    assert set(timings) == {"classic", "device"}
    assert all(t.images_per_second > 0 and t.train_seconds > 0 and len(t.test_accs) == 1 for t in timings.values())
    printed = capsys.readouterr().out
    assert "device: CPU" in printed and "device / classic training throughput" in printed
    text = out.read_text()
    assert "## CPU: " in text and "| classic |" in text and "| device |" in text
    assert "## NVIDIA H200 (CUDA)" in text  # another device's section stays
    # each row says what the trainer resolved, which its name leaves to the defaults
    assert all(t.settings.startswith("fp32 · ") and t.settings.endswith(" · eager") for t in timings.values())
    rows = json.loads((tmp_path / "results.json").read_text())
    assert all(r["settings"] == timings[r["path"]].settings
               for r in next(v for k, v in rows.items() if k.startswith("CPU"))["rows"])
    assert f"| device | {timings['device'].settings} |" in text
    assert not list(tmp_path.glob(".*.tmp"))


def test_bench_refuses_what_the_device_cannot_do(mnist_root):
    from kit.bench import PATHS

    for path in (p for p, options in PATHS.items() if options.get("graph")):
        with pytest.raises(ValueError, match="CUDA-graph paths need a CUDA device"):
            bench("cpu", paths=[path], results=None)
    with pytest.raises(ValueError, match="unknown path"):
        bench("cpu", paths=["warp"], results=None)


def test_the_command_line_names_every_path():
    import kit.__main__ as cli
    from kit.bench import PATHS

    bench_help = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())
    listed = {p.strip() for p in bench_help.split("from: ", 1)[1].split(" --seed")[0].split(",")}
    assert listed == set(PATHS)


@pytest.mark.parametrize("options, words", [
    (dict(epochs=0), "epochs must be a whole number of at least 1"),
    (dict(limit=-5), "limit must be a whole number of at least 1"),
    (dict(limit=0), "limit must be a whole number of at least 1"),
])
def test_the_bench_refuses_bad_options_before_timing_anything(options, words, capsys):
    with pytest.raises(ValueError, match=words):
        bench("cpu", paths=["device"], results=None, **options)
    assert "device" not in capsys.readouterr().out  # nothing was timed


def test_the_bench_refuses_a_results_file_it_cannot_write_before_timing(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        bench("cpu", paths=["device"], results=tmp_path)
    (tmp_path / "results.json").write_text("[1, 2]")  # some other program's JSON
    with pytest.raises(ValueError, match="not the figures of `python -m kit bench`"):
        bench("cpu", paths=["device"], results=tmp_path / "RESULTS.md")


def test_a_shorter_bench_is_not_recorded_in_the_full_length_results(monkeypatch, capsys):
    import kit.__main__ as cli

    seen = {}
    monkeypatch.setattr("kit.bench.bench", lambda *a, **kw: seen.update(kw))
    assert cli.main(["bench", "--device", "cpu", "--epochs", "1", "--limit", "256"]) == 0
    assert seen["results"] is None and "not recorded" in capsys.readouterr().out
    # a bad count is refused first, with nothing said of recording what will never be measured
    assert cli.main(["bench", "--device", "cpu", "--epochs", "0"]) == 1
    said = capsys.readouterr()
    assert "epochs must be a whole number" in said.err and "not recorded" not in said.out


def test_the_bench_trains_the_solutions_step_4_with_its_recipe():
    import re

    import kit

    net, lr = solution_model()
    source = json.loads(SOLUTION.read_text())
    code = "\n".join("".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code")
    augment = eval(re.search(r"kit\.Augment\([^)]*\)", code).group(0), {"kit": kit})  # the notebook's own
    assert augment == AUGMENT and f"batch_size = {BATCH}" in code
    assert lr > 0 and sum(p.numel() for p in net().parameters()) > 0


def test_the_bench_times_the_default_step_against_the_other_memory_format():
    import torch

    from kit.bench import default_paths

    cuda = default_paths(torch.device("cuda"))
    # cut short, a run keeps the default step's row and its ratio to the classic path, both of one process
    assert cuda[:2] == ["device + CUDA graph", "classic"] and cuda[-1] == "device + compile"
    assert "device NCHW" in cuda and "device + CUDA graph (fp32)" in cuda and "device + CUDA graph (fp32 NCHW)" in cuda
    assert cuda[2] == "device + compile + CUDA graph"  # the step fused and captured whole: next after the ratio's base
    assert "device + compile + CUDA graph" not in default_paths(torch.device("cpu"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert "device NCHW" in default_paths(torch.device("cpu"))  # channels_last by default on one thread
        torch.set_num_threads(2)
        assert "device channels_last" in default_paths(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)


def test_a_row_measured_on_another_case_leaves_the_section(tmp_path, capsys):
    """Rows of earlier runs stay beside the new ones only where they timed the same case (model, recipe, epochs,
    torch): a row of another model would stand under the new run's words."""
    import torch

    from kit.bench import Timing, _write

    net, lr = solution_model()
    out, twin = tmp_path / "RESULTS.md", tmp_path / "results.json"
    row = lambda path, **extra: {"path": path, "train_seconds": 9.0, "first_epoch": 1.0, "test_seconds": 1.0,  # noqa: E731
                                 "total": 11.0, "images_per_second": 100, "test_accs": [99.0], "measured": "then",
                                 **extra}
    timing = Timing("device", 0.1, 1.0, 2.0, 0.5, 1000.0, (99.1,))
    _write(out, "CPU: test", {"device": timing}, 15, 60_000, net, lr, torch.device("cpu"))
    case = json.loads(twin.read_text())["CPU: test"]["what"]
    data = json.loads(twin.read_text())
    data["CPU: test"]["rows"] += [row("classic", case=case), row("device NCHW", case="another model's words"),
                                  row("device + compile")]  # no case: an older file's row, of the section's words
    data["CPU: test"]["what"] = "the older words of the section"
    twin.write_text(json.dumps(data))
    _write(out, "CPU: test", {"device": timing}, 15, 60_000, net, lr, torch.device("cpu"))
    kept = [r["path"] for r in json.loads(twin.read_text())["CPU: test"]["rows"]]
    assert kept == ["classic", "device"]
    said = capsys.readouterr().out
    assert "2 row(s) measured on another case dropped (device NCHW of then, device + compile of then)" in said
    assert "| device NCHW |" not in out.read_text()


def test_a_compiled_path_finds_no_kernel_an_earlier_run_compiled(monkeypatch, tmp_path):
    import os

    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from kit.bench import cold_compile

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "warm"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "warm-triton"))
    with cold_compile():
        inside = cache_dir()
        assert Path(inside).is_dir() and Path(inside) != tmp_path / "warm" and "TRITON_CACHE_DIR" not in os.environ
    assert not Path(inside).exists()  # the fresh caches go with the path's run
    assert cache_dir() == str(tmp_path / "warm") and os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "warm-triton")


def test_a_default_step_row_is_the_captured_step_whatever_kit_graph_says(monkeypatch):
    """KIT_GRAPH=0 sends notebooks eager; a bench row named for the default step must still time the default
    (once, an H200's 'device NCHW' row timed the eager step under it)."""
    import torch

    from kit import bench

    class Built(Exception):
        pass

    def trainer(*args, **options):
        raise Built(options)

    monkeypatch.setenv("KIT_GRAPH", "0")
    monkeypatch.setattr(bench, "Trainer", trainer)
    monkeypatch.setattr(bench, "make_loaders", lambda *args, **options: (None, None))
    monkeypatch.setattr(bench, "_sync", lambda device: None)
    for device, graph in (("cuda", True), ("cpu", False)):
        with pytest.raises(Built) as built:
            bench.time_path("device NCHW", None, None, device=torch.device(device), epochs=1, seed=0, mean=0.0,
                            std=1.0, net=lambda: None, lr=0.1)
        assert built.value.args[0]["graph"] is graph and built.value.args[0]["channels_last"] is False


def test_a_rows_settings_name_precision_memory_format_and_step():
    from types import SimpleNamespace

    import torch

    from kit.bench import settings

    def trainer(amp=None, channels_last=True, graph=False, compiled=False):
        return SimpleNamespace(amp_dtype=amp, channels_last=channels_last, graph=graph, compiled=compiled)

    assert settings(trainer()) == "fp32 · channels_last · eager"
    assert settings(trainer(torch.bfloat16, graph=True)) == "bf16 · channels_last · CUDA graph"
    assert settings(trainer(channels_last=False, compiled=True)) == "fp32 · NCHW · torch.compile"
    assert settings(trainer(graph=True, compiled=True)) == "fp32 · channels_last · torch.compile + CUDA graph"


def test_on_cuda_every_uncompiled_device_path_is_warmed_up_before_any_clock(monkeypatch):
    """CUDA loads a kernel on its first use: unwarmed, the first path timed pays for its own."""
    import torch

    from conftest import make_imageset
    from kit import bench

    warmed = []

    def time_path(name, train_set, test_set, **options):
        warmed.append((name, len(train_set)))
        if name == "device NCHW":
            raise RuntimeError("a broken path is left to its timed run")

    monkeypatch.setattr(bench, "time_path", time_path)
    data = make_imageset(n=2_000)
    paths = bench.default_paths(torch.device("cuda"))
    bench._warm_up(torch.device("cuda"), paths, data, data)
    assert [name for name, _ in warmed] == [p for p in paths if p in
                                            ("device + CUDA graph", "device + CUDA graph (fp32)",
                                             "device + CUDA graph (fp32 NCHW)", "device NCHW", "device")]
    assert all(n == 8 * bench.BATCH for _, n in warmed)
    warmed.clear()
    bench._warm_up(torch.device("cpu"), paths, data, data)
    assert not warmed  # a CPU loads nothing lazily, and its bench is long enough
