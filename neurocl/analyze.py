"""Tables from runs: mean ± std over seeds of every group of overrides.

    python -m neurocl.analyze outputs/multirun/<sweep> [more sweeps ...] [--out DIR]

Reads each run's results.json and .hydra/overrides.yaml; runs that differ only
in `seed` form one row. Writes results.md and results.csv into --out (default:
the first sweep directory) and prints the markdown.
"""

import argparse
import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from neurocl.io import atomic_path

COLUMNS = ["A_last", "Abar", "forgetting_chaudhry", "forgetting_avalanche", "BWT", "FWT",
           "prototypes", "memory_MB", "wall_s"]


def load_runs(directories) -> list[dict]:
    runs = []
    for directory in directories:
        for results in sorted(Path(directory).rglob("results.json")):
            overrides_file = results.parent / ".hydra" / "overrides.yaml"
            overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
            data = json.loads(results.read_text())
            row = dict(data["metrics"])
            row["prototypes"] = data["memory_stats"].get("prototypes", float("nan"))
            row["memory_MB"] = data["memory_stats"]["memory_bytes"] / 2**20
            row["wall_s"] = data["wall_s"]
            setting = " ".join(o for o in overrides if not o.startswith("seed=")) or "(defaults)"
            runs.append({"setting": setting, "seed": data["config"]["seed"], **row})
    return runs


def table(runs: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for run in runs:
        groups[run["setting"]].append(run)
    rows = []
    for setting, members in groups.items():
        row = {"setting": setting, "seeds": len(members)}
        for column in COLUMNS:
            values = np.array([m[column] for m in members], dtype=float)
            row[column] = (float(values.mean()), float(values.std()))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| setting | seeds | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = []
        for column in COLUMNS:
            mean, std = row[column]
            digits = 1 if column in ("wall_s", "memory_MB", "prototypes") else 4
            if np.isnan(mean):
                cells.append("n/a")
            else:
                cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if row["seeds"] > 1 else f"{mean:.{digits}f}")
        lines.append(f"| `{row['setting']}` | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["setting", "seeds"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")])
    for row in rows:
        writer.writerow([row["setting"], row["seeds"]] + [v for c in COLUMNS for v in row[c]])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = load_runs(args.sweeps)
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.sweeps))}: run a sweep first")
    rows = table(runs)
    out = args.out or args.sweeps[0]
    text = markdown(rows)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    write_csv(rows, out / "results.csv")
    print(text)


if __name__ == "__main__":
    main()
