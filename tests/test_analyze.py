import pytest
import yaml

from conftest import compose
from neurocl import analyze
from neurocl.run import execute


def test_analyze_groups_seeds_into_mean_and_std(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for job, (memory, seed) in enumerate([("ncm", 0), ("ncm", 1), ("prototypes", 0)]):
        overrides = [f"memory={memory}", f"seed={seed}"]
        out = sweep / str(job)
        execute(compose("experiment=digits_quick", "cache.enabled=false", *overrides), out)
        (out / ".hydra").mkdir()
        (out / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    analyze.main([str(sweep), "--out", str(tmp_path / "table")])
    text = (tmp_path / "table" / "results.md").read_text()
    assert "| `memory=ncm` | 2 |" in text and "| `memory=prototypes` | 1 |" in text
    assert " ± " in text and text in capsys.readouterr().out
    assert "| n/a |" in text  # NCM has no prototypes
    csv = (tmp_path / "table" / "results.csv").read_text().splitlines()
    assert csv[0].startswith("setting,seeds,A_last_mean,A_last_std") and len(csv) == 3
    page = (tmp_path / "table" / "report.html").read_text()
    assert "<td><code>memory=ncm</code></td><td>2</td>" in page and "Runs without results (0)" in page
    # inlined: the summary and curve plots, and each of the 3 runs' R heatmaps (the store's prototype map too)
    assert page.count("data:image/png;base64,") >= 3 + 3 + 1
    assert "accuracy on the experiences seen so far" in page and "forgetting (Chaudhry) after each experience" in page
    assert "open_set_auroc" in text and (tmp_path / "table" / "open_set.png").stat().st_size > 0
    assert "seen against not-yet-seen classes" in page  # the open-set plot, inlined

    (sweep / "3" / ".hydra").mkdir(parents=True)  # a job that died before writing results.json
    analyze.main([str(sweep), "--out", str(tmp_path / "table")])
    page = (tmp_path / "table" / "report.html").read_text()
    assert "Runs without results (1)" in page and str(sweep / "3") in page
    assert str(sweep / "3") in capsys.readouterr().out


def test_study_readme_and_reproducibility_table_are_generated(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "study"
    for job, seed in enumerate([0, 1]):
        run = sweep / str(job)
        execute(compose("experiment=digits_quick", "memory=ncm", f"seed={seed}", "cache.enabled=false"), run)
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["memory=ncm", f"seed={seed}"]))
    out.mkdir()
    (out / "study.yaml").write_text(yaml.safe_dump({
        "title": "NCM on digits", "question": "Does NCM hold?", "command": "python -m neurocl.run --multirun ...",
        "references": [{"name": "NCM", "setting": "memory=ncm", "A_last": 0.0, "forgetting": 0.1},
                       {"name": "kNN", "setting": "memory=knn", "A_last": 0.9}]}))
    analyze.main([str(sweep), "--out", str(out), "--reproducibility", str(tmp_path / "REPRO.md")])
    readme = (out / "README.md").read_text()
    assert readme.startswith("# NCM on digits") and "Does NCM hold?" in readme and "| `memory=ncm` | 2 |" in readme
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    repro = (tmp_path / "REPRO.md").read_text().splitlines()
    assert "| NCM | 0.000 (0.100) |" in repro[2] and "| 2 | no |" in repro[2]  # far from the made-up 0.0
    assert "| kNN | 0.900 | not run | 0 | no |" in repro[3]


def test_analyze_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit):
        analyze.main([str(tmp_path)])


def test_overrides_every_row_shares_are_said_once():
    from neurocl.analyze import drop_shared, shared_overrides

    runs = [{"setting": "memory=snn conditions=corrupted neuron=lif"}, {"setting": "memory=snn conditions=corrupted neuron=alif"}]
    shared = shared_overrides(runs)
    assert shared == ["memory=snn", "conditions=corrupted"]
    assert [r["setting"] for r in drop_shared(runs, shared)] == ["neuron=lif", "neuron=alif"]
    assert shared_overrides([{"setting": "memory=ncm"}, {"setting": "memory=ncm"}]) == []


def test_the_readouts_compared_are_found_under_both_names():
    from neurocl.analyze import compared_readouts

    columns = ["setting", "clean", "clean store", "occlusion", "occlusion store", "ECE", "ECE store"]
    assert compared_readouts(columns) == ("store", ["clean", "occlusion"])
    legacy = [c.replace(" store", " store_vote") for c in columns]  # runs written before the rename
    assert compared_readouts(legacy) == ("store_vote", ["clean", "occlusion"])
    assert compared_readouts(["setting", "clean", "ECE"])[1] == []  # control: one readout, nothing compared


def test_readout_comparison_plot(tmp_path):
    from neurocl import plots

    rows = [{"clean": (0.8, 0.0), "clean store_vote": (0.7, 0.0), "occlusion": (0.3, 0.0),
             "occlusion store_vote": (float("nan"), 0.0)}]
    plots.readout_comparison(rows, ["clean", "occlusion"], "store_vote", tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_can_be_averaged_over_class_orders_too(tmp_path, capsys):
    import json

    sweep = tmp_path / "sweep"
    orders = ["scenario.class_order=[0,1,2,3]", "scenario.class_order=[2,3,0,1]"]
    for job, (order, seed, a_last) in enumerate([(orders[0], 0, 0.8), (orders[1], 0, 0.6), (orders[0], 1, 0.7)]):
        run = sweep / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["memory=ncm", order, f"seed={seed}"]))
        metrics = {"A_last": a_last, "Abar": a_last, "forgetting_chaudhry": 0.1, "forgetting_avalanche": 0.1,
                   "BWT": -0.1, "FWT": 0.0}
        (run / "results.json").write_text(json.dumps({
            "metrics": metrics, "memory_stats": {"memory_bytes": 1024}, "wall_s": 1.0, "config": {"seed": seed},
            "R": [[1.0, 0.0], [0.9, a_last]]}))
    analyze.main([str(sweep), "--out", str(tmp_path / "by_seed")])
    assert (tmp_path / "by_seed" / "results.md").read_text().count("| `") == 2  # control: orders apart
    analyze.main([str(sweep), "--out", str(tmp_path / "both"), "--over", "seed,scenario.class_order"])
    assert "| `memory=ncm` | 3 | 0.7000 ± 0.0816 |" in (tmp_path / "both" / "results.md").read_text()
