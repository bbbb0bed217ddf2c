"""`python -m kit bench` runs both paths and records what it measured (it asserts no speed)."""
from kit.bench import bench


def test_bench_times_both_paths_and_records_them(mnist_root, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    timings = bench("cpu", epochs=1, limit=512, root=mnist_root, results=out)
    assert set(timings) == {"classic", "device"}
    assert all(t.images_per_second > 0 and t.train_seconds > 0 for t in timings.values())
    printed = capsys.readouterr().out
    assert "device: CPU" in printed and "device-resident / classic training throughput" in printed
    text = out.read_text()
    assert "- device: CPU" in text and "| classic |" in text and "| device |" in text
    assert not list(tmp_path.glob(".*.tmp"))
