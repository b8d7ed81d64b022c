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


def test_analyze_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit):
        analyze.main([str(tmp_path)])
