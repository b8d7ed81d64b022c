"""Tables from runs: mean ± std over seeds of every group of overrides.

    python -m neurocl.analyze outputs/multirun/<sweep> [more sweeps ...] [--out DIR]
                              [--reproducibility experiments/REPRODUCIBILITY.md]

Reads each run's results.json and .hydra/overrides.yaml; runs that differ only
in `seed` form one row. Writes results.md, results.csv, results.png and a
self-contained report.html (tables, accuracy over experiences, forgetting per
experience, each run's R heatmap, spike raster and prototype map) into --out
(default: the first sweep directory) and prints the markdown. Runs without a
results.json (failed, killed, still running) or with one that cannot be read are listed, not dropped. When --out
holds a study.yaml (title, question, command, notes, references), it also
writes the study's README.md from it; with --reproducibility it writes the
table of reference numbers against ours.
"""

import argparse
import csv
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from neurocl import plots
from neurocl import report as html_report
from neurocl.errors import DataError
from neurocl.io import atomic_path

COLUMNS = ["A_last", "Abar", "forgetting_chaudhry", "forgetting_avalanche", "BWT", "FWT",
           "prototypes", "memory_MB", "wall_s"]
SPIKING = ["spikes/query", "SNN pJ/query", "dense pJ/query"]  # present for spiking memories
OPEN_SET = ["open_set_auroc", "open_set_abstained_at_95"]  # seen against not-yet-seen classes, when measured
DIGITS = {"wall_s": 1, "prototypes": 0, "memory_MB": 2, "spikes/query": 1, "SNN pJ/query": 0, "dense pJ/query": 0}


def condition_columns(conditions: dict) -> dict:
    """Calibration (ECE) and AURC on clean data per readout; accuracy per test condition and readout too when
    there is more than one readout on clean data (with one, A_last already says it)."""
    readouts = conditions.get("clean", {})
    own = next(iter(readouts), None)  # the memory's own answer comes first; others are named
    name = lambda prefix, readout: prefix if readout == own else f"{prefix} {readout}"
    out = {}
    if len(conditions) > 1 or len(readouts) > 1:
        out.update({name(c, r): m["accuracy"] for c, by_readout in conditions.items() for r, m in by_readout.items()})
    out.update({name("ECE", r): m["ece"] for r, m in readouts.items()})
    out.update({name("AURC", r): m["aurc"] for r, m in readouts.items()})
    return out


def read_results(path: Path) -> dict:
    """A run's results.json, with the keys a table needs; DataError naming the file when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
        data["metrics"]["A_last"], data["memory_stats"]["memory_bytes"], data["wall_s"], data["config"]["seed"]
    except (OSError, ValueError, KeyError, TypeError) as e:  # cut short, not JSON, another version's layout
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}). Fix: rerun that run (or resume it: "
                        "resume=true), or move the file away") from None
    return data


_WARNED: set[Path] = set()


def load_runs(directories, over: tuple[str, ...] = ("seed",)) -> list[dict]:
    """One row per run; runs whose overrides differ only in the keys `over` (default: the seed) share a setting.
    A results.json that cannot be read is left out with a warning naming it (incomplete_runs lists its run)."""
    runs = []
    for directory in directories:
        for results in sorted(Path(directory).rglob("results.json")):
            overrides_file = results.parent / ".hydra" / "overrides.yaml"
            overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
            try:
                data = read_results(results)
            except DataError as e:
                if results not in _WARNED:  # once per file, however many tables and figures read the runs
                    _WARNED.add(results)
                    print(f"warning: {e}", file=sys.stderr)
                continue
            row = dict(data["metrics"])
            row["prototypes"] = data["memory_stats"].get("prototypes", float("nan"))
            row["memory_MB"] = data["memory_stats"]["memory_bytes"] / 2**20
            row["wall_s"] = data["wall_s"]
            if "energy" in data["memory_stats"]:
                stats = data["memory_stats"]
                row.update({"spikes/query": stats["spikes_per_query"],
                            "SNN pJ/query": stats["energy"]["snn_pJ_per_query"],
                            "dense pJ/query": stats["energy"]["dense_pJ_per_query"]})
            row.update(condition_columns(data.get("conditions", {})))
            if "validation" in data:  # a search's objective, beside the test A_last it could not see
                row["A_last validation"] = data["validation"]["metrics"]["A_last"]
            if "multi_label" in data:  # A_last is the mean per-label AUROC there; macro-F1 at training thresholds
                row["macro_F1 last"] = data["multi_label"]["metrics_macro_f1"]["A_last"]
            setting = " ".join(o for o in overrides if o.split("=", 1)[0] not in over) or "(defaults)"
            runs.append({"setting": setting, "seed": data["config"]["seed"], "dir": str(results.parent), **row})
    return runs


def incomplete_runs(directories) -> list[Path]:
    """Run directories (they hold .hydra/) without a readable results.json: failed, killed, still running, or
    whose results file was cut short."""
    def readable(results: Path) -> bool:
        try:
            return bool(read_results(results))
        except DataError:
            return False

    return sorted(hydra.parent for directory in directories for hydra in Path(directory).rglob(".hydra")
                  if not readable(hydra.parent / "results.json"))


def shared_overrides(runs: list[dict]) -> list[str]:
    """Overrides that every run has (said once above the table, not in every row)."""
    settings = [set(run["setting"].split()) for run in runs]
    if len({run["setting"] for run in runs}) < 2:  # one setting: the row names it
        return []
    shared = set.intersection(*settings)
    return [o for o in runs[0]["setting"].split() if o in shared]


def drop_shared(runs: list[dict], shared: list[str]) -> list[dict]:
    for run in runs:
        run["setting"] = " ".join(o for o in run["setting"].split() if o not in shared) or "(shared only)"
    return runs


def columns_of(runs: list[dict]) -> list[str]:
    """COLUMNS, then whatever else the runs report (spiking, conditions), in first-seen order."""
    extra = [k for run in runs for k in run if k not in ("setting", "seed", "dir") and k not in COLUMNS]
    return COLUMNS + list(dict.fromkeys(extra))


def table(runs: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for run in runs:
        groups[run["setting"]].append(run)
    rows = []
    for setting, members in groups.items():
        row = {"setting": setting, "seeds": len(members)}
        for column in columns_of(runs):
            values = np.array([m.get(column, np.nan) for m in members], dtype=float)
            row[column] = (float(values.mean()), float(values.std()))
        rows.append(row)
    return sorted(rows, key=lambda row: -row["A_last"][0])


def markdown(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    head = "| setting | seeds | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for row in rows:
        lines.append(f"| `{row['setting']}` | {row['seeds']} | " + " | ".join(cell(row, c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def cell(row: dict, column: str) -> str:
    """mean ± std over seeds (the mean alone for one seed), or n/a."""
    mean, std = row.get(column, (np.nan, np.nan))
    digits = DIGITS.get(column, 4)
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if row["seeds"] > 1 else f"{mean:.{digits}f}"


def tables(rows: list[dict]) -> str:
    """The main table (with spike and energy columns for spiking memories), then test conditions if any."""
    present = [c for c in rows[0] if c not in ("setting", "seeds")]
    main = COLUMNS[:1] + [c for c in ["A_last validation"] if c in present] + COLUMNS[1:] \
        + [c for c in SPIKING + OPEN_SET if c in present]
    text = markdown(rows, main)
    conditions = [c for c in present if c not in main]
    if conditions:
        text += ("\nFinal memory on each test condition (accuracy), and calibration on clean data "
                 "(ECE, AURC: lower is better), per readout:\n\n" + markdown(rows, conditions))
    return text


def write_csv(rows: list[dict], path: Path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [c for c in rows[0] if c not in ("setting", "seeds")]
    writer.writerow(["setting", "seeds"] + [f"{c}_{s}" for c in columns for s in ("mean", "std")])
    for row in rows:
        writer.writerow([row["setting"], row["seeds"]] + [v for c in columns for v in row[c]])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def write_text(path: Path, text: str):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def study_readme(study: dict, table_md: str, out: Path = Path(".")) -> str:
    """The study's README: its question, the command that made the table, the table, the plot, the notes."""
    parts = [f"# {study['title']}\n", f"**Question.** {study['question'].strip()}\n",
             "**Command** (the table and plot below are what it produced):\n",
             "\n".join("    " + line for line in study["command"].strip().splitlines()) + "\n",
             "Mean ± std over seeds; `results.csv` has the same numbers. Columns: "
             "see Metrics in the top-level README.\n", table_md, "![A_last and forgetting](results.png)\n"]
    if (Path(out) / "anytime.png").exists():
        parts.append("![anytime accuracy during the stream](anytime.png)\n")
    if (Path(out) / "readouts.png").exists():
        parts.append("![own readout against the store's vote](readouts.png)\n")
    if (Path(out) / "open_set.png").exists():
        parts.append("![seen against not-yet-seen classes](open_set.png)\n")
    if study.get("notes"):
        parts.append(study["notes"].strip() + "\n")
    parts.append("_Generated by `python -m neurocl.analyze`; edit study.yaml, not this file._\n")
    return "\n".join(parts)


def reproducibility(study: dict, rows: list[dict]) -> str:
    """Each reference number beside ours, and whether it is within the stated tolerance."""
    by_setting = {row["setting"]: row for row in rows}
    lines = ["| reference | value (forgetting) | ours, mean ± std | seeds | reproduced | command | note |",
             "|---|---|---|---|---|---|---|"]
    for ref in study.get("references", []):
        row = by_setting.get(ref["setting"])
        if row is None:
            ours, seeds, verdict = "not run", 0, "no"
        else:
            (a, a_std), (f, f_std), seeds = row["A_last"], row["forgetting_chaudhry"], row["seeds"]
            ours = f"{a:.4f} ± {a_std:.4f} ({f:.3f})"
            verdict = "yes" if abs(a - ref["A_last"]) <= ref.get("tolerance", 0.01) else "no"
        expected = f"{ref['A_last']:.3f}" + (f" ({ref['forgetting']:.3f})" if "forgetting" in ref else "")
        command = f"`python -m neurocl.run {ref['setting'].replace('(defaults)', '').strip()} seed=0,1,2 --multirun`"
        lines.append(f"| {ref['name']} | {expected} | {ours} | {seeds} | {verdict} | {command} | {ref.get('note', '')} |")
    return "\n".join(lines) + "\n"


def compared_readouts(columns: list[str]) -> tuple[str, list[str]]:
    """(the second readout's name, the conditions both readouts were scored on) from a table's columns: "clean" and
    "clean store" for the spiking memory's network and the store's own readout ("store_vote" in runs before
    2026-12)."""
    store = "store" if any(c.endswith(" store") for c in columns) else "store_vote"
    return store, [c[: -len(store) - 1] for c in columns if c.endswith(f" {store}")
                   and c[: -len(store) - 1] in columns and not c.startswith(("ECE", "AURC"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--over", default="seed", help="keys whose runs are averaged (comma-separated), e.g. "
                        "seed,scenario.class_order: mean ± std over seeds and class orders (the seeds column "
                        "then counts the runs averaged)")
    parser.add_argument("--reproducibility", type=Path, help="write the reference table here (needs study.yaml)")
    args = parser.parse_args(argv)
    for path in [p for p in args.sweeps if not p.is_dir()]:  # a shell glob brings multirun.yaml, summary.md...
        print(f"warning: {path} is not a directory; give run or sweep directories. Left out.", file=sys.stderr)
    args.sweeps = [p for p in args.sweeps if p.is_dir()] or parser.error("no directory given: give run or sweep "
                                                                        "directories")
    runs = load_runs(args.sweeps, over=tuple(args.over.split(",")))
    missing = incomplete_runs(args.sweeps)
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.sweeps))}"
                     + (f" ({len(missing)} runs without results: {', '.join(map(str, missing[:3]))})" if missing
                        else "") + ": run a sweep first")
    shared = shared_overrides(runs)
    rows = table(drop_shared(runs, shared))
    out = args.out or args.sweeps[0]
    text = (f"Every row also has: `{' '.join(shared)}`.\n\n" if shared else "") + tables(rows)
    write_text(out / "results.md", text)
    write_csv(rows, out / "results.csv")
    study_file = out / "study.yaml"
    study = yaml.safe_load(study_file.read_text()) if study_file.exists() else None
    plots.study_summary(rows, out / "results.png", study["title"] if study else "")
    if all(c in row and not np.isnan(row[c][0]) for row in rows for c in OPEN_SET):
        plots.study_summary(rows, out / "open_set.png", study["title"] if study else "", plots.OPEN_SET_PANELS)
    else:  # not measured here (multi-label, one experience): no plot left over from an earlier analysis
        (out / "open_set.png").unlink(missing_ok=True)
    store, compared = compared_readouts(list(rows[0]))
    if compared:
        plots.readout_comparison(rows, compared, store, out / "readouts.png")
    report = out / "report.html"
    write_text(report, html_report.write(out, args.sweeps, runs, rows, shared, missing, cell))  # its figures too
    if study:
        write_text(out / "README.md", study_readme(study, text, out))
    if args.reproducibility:
        if not study:
            parser.error(f"--reproducibility needs {study_file} with a references list")
        header = study.get("reproducibility_header", "").strip()
        write_text(args.reproducibility, (header + "\n\n" if header else "") + reproducibility(study, rows))
    print(text)
    if missing:
        print(f"{len(missing)} runs without a readable results.json (failed, killed, running or cut short):\n"
              + "\n".join(f"  {d}" for d in missing))
    print(f"report: {report}")


if __name__ == "__main__":
    main()
