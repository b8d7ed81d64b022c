"""report.html: one self-contained page of a study, for a researcher to read and to paste from.

A summary of the stream and the command, a compact main table (columns that repeat another in every row move
to the full table below it), the study's figures in a grid at their natural size, a glossary, the runs without
results, and each run's own figures. Tables scroll rather than clip; every setting comes in the main table's
order everywhere. `tests/test_report_browser.py` renders it in headless Chromium and checks its layout.
"""

import base64
import html
import json
import struct
from pathlib import Path

import numpy as np

from neurocl import plots

MAIN = ["A_last", "A_last validation", "Abar", "forgetting_chaudhry", "forgetting_avalanche", "BWT", "FWT",
        "ECE", "AURC", "open_set_auroc", "memory_MB", "wall_s"]
GLOSSARY = {
    "R[t, k]": "accuracy on experience k's test set after training through experience t (an abstention is wrong)",
    "A_last": "mean over k of R[T, k]: accuracy on every experience after the last one",
    "A_last validation": "A_last on the held-out validation split (what a search optimises)",
    "Abar": "mean over t of the accuracy on the experiences seen so far (mean over k <= t of R[t, k])",
    "forgetting_chaudhry": "mean over k < T of (best earlier accuracy on k - R[T, k]) (Chaudhry et al. 2018)",
    "forgetting_avalanche": "mean over k < T of (R[k, k] - R[T, k]), as Avalanche reports it",
    "BWT": "backward transfer, mean over k < T of (R[T, k] - R[k, k]) (GEM); negative: forgetting",
    "FWT": "forward transfer, mean over k > 0 of (R[k-1, k] - b_k), b_k the untrained memory's accuracy (GEM)",
    "ECE": "expected calibration error of the memory's confidence on the clean test set (lower is better)",
    "AURC": "area under the risk-coverage curve: error rate as the least confident answers are withheld "
            "(lower is better)",
    "open_set_auroc": "AUROC of the confidence separating seen classes from classes not yet seen",
    "open_set_abstained_at_95": "share of not-yet-seen queries abstained on when 95% of seen ones are answered",
    "prototypes": "prototypes in the store at the end",
    "memory_MB": "the memory's state in MiB",
    "wall_s": "the run's wall-clock seconds, encoding included",
    "spikes/query": "spikes a query costs in the spiking network",
    "SNN pJ/query, dense pJ/query": "energy estimate of the spiking network and of the same work done densely",
    "<condition> <readout>": "accuracy of that readout on that test condition (the memory's own readout unnamed)",
}
FIGURES = (("results.png", "A_last and forgetting per setting, mean ± std over seeds"),
           ("accuracy_matrices.png", "R[t, k] per setting, mean over seeds"),
           ("accuracy_over_experiences.png", "accuracy on the experiences seen so far (band: std over seeds)"),
           ("anytime.png", "online streams: anytime accuracy during the stream, mean over seeds (band: std)"),
           ("forgetting_per_experience.png", "forgetting (Chaudhry) after each experience"),
           ("readouts.png", "the memory's own readout against the store's, per condition"),
           ("open_set.png", "seen against not-yet-seen classes"))
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1600px;margin:0 auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
code{background:#f4f4f4;padding:0 3px;font-size:90%}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dl.summary dt{font-weight:600}
dl.glossary dt{font-weight:600;margin-top:6px}dl.glossary dd{margin-left:16px}
.figures{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;max-width:100%}img{display:block;max-width:100%;height:auto}
figcaption{font-size:12px;color:#555;max-width:640px}
"""


def png_width(path: Path) -> int:
    """A PNG's width in pixels, from its header."""
    return struct.unpack(">I", Path(path).read_bytes()[16:20])[0]


def figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}" '
            f'width="{png_width(path)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def repeated_columns(rows: list[dict]) -> dict:
    """Main-table columns that say nothing another does not, in every row: {column: why}."""
    def values(column):
        return np.array([row[column][0] for row in rows if column in row], dtype=float)

    out = {}
    if "FWT" in rows[0] and np.allclose(np.nan_to_num(values("FWT")), 0):
        out["FWT"] = "0 in every row"
    if {"forgetting_avalanche", "forgetting_chaudhry"} <= set(rows[0]) and \
            np.allclose(values("forgetting_avalanche"), values("forgetting_chaudhry"), equal_nan=True):
        out["forgetting_avalanche"] = "equal to forgetting_chaudhry in every row"
    if {"BWT", "forgetting_chaudhry"} <= set(rows[0]) and \
            np.allclose(values("BWT"), -values("forgetting_chaudhry"), equal_nan=True):
        out["BWT"] = "equal to -forgetting_chaudhry in every row"
    return out


def html_table(rows: list[dict], columns: list[str], cell) -> str:
    head = "<tr><th>setting</th><th>seeds</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join(f"<tr><td><code>{html.escape(row['setting'])}</code></td><td>{row['seeds']}</td>"
                   + "".join(f"<td>{html.escape(cell(row, c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table>{head}{body}</table></div>'


def commands(directories) -> list[str]:
    """The command of each sweep (its multirun.yaml), else of each run (its overrides)."""
    import yaml

    out = []
    for directory in map(Path, directories):
        sweep = directory / "multirun.yaml"
        if sweep.exists():
            task = yaml.safe_load(sweep.read_text())["hydra"]["overrides"]["task"]
            out.append("python -m neurocl.run --multirun " + " ".join(task))
        else:
            for overrides in sorted(directory.rglob(".hydra/overrides.yaml")):
                out.append("python -m neurocl.run " + " ".join(yaml.safe_load(overrides.read_text()) or []))
    return list(dict.fromkeys(out))


def stream_summary(runs: list[dict]) -> dict:
    """What the runs were run on, from their results.json: one value, or each distinct value."""
    seen = {"dataset": [], "stream": [], "class order": [], "encoder": [], "commit": []}
    name = lambda node: (node or {}).get("_target_", "not recorded").rsplit(".", 1)[-1]
    for run in runs:
        data = json.loads((Path(run["dir"]) / "results.json").read_text())
        config, experiences = data.get("config", {}), data.get("experiences") or []
        seen["dataset"].append(name(config.get("dataset")))
        seen["stream"].append(f"{name(config.get('scenario'))}: {len(experiences)} experiences"
                              + (f" x {len(experiences[0]['classes'])} classes" if experiences else ""))
        seen["class order"].append(" | ".join(" ".join(map(str, e["classes"])) for e in experiences) or "not recorded")
        encoder = config.get("encoder") or {}
        details = [f"{k}={encoder[k]}" for k in ("model", "variant", "resolution") if encoder.get(k) is not None]
        seen["encoder"].append(" ".join([name(encoder), *details]))
        origin = data.get("provenance") or {}
        seen["commit"].append(((origin.get("git_commit") or "")[:12] + (" (uncommitted changes)"
                               if origin.get("git_dirty") else "")) or "not recorded (an older run)")
    return {key: "; ".join(dict.fromkeys(values)) for key, values in seen.items()}


def experience_curves(runs: list[dict]) -> tuple[dict, dict]:
    """Per setting, per seed: mean accuracy on the experiences seen so far, and Chaudhry forgetting, after each t."""
    from neurocl import metrics

    seen, forgetting = {}, {}
    for run in runs:
        R = np.asarray(json.loads((Path(run["dir"]) / "results.json").read_text())["R"], dtype=float)
        seen.setdefault(run["setting"], []).append([R[t, : t + 1].mean() for t in range(len(R))])
        F = metrics.forgetting_matrix(R)
        forgetting.setdefault(run["setting"], []).append([0.0] + [np.nanmean(F[t, :t]) for t in range(1, len(R))])
    return seen, forgetting


def anytime_figure(runs: list[dict], path: Path):
    """The anytime curves of online runs, one line per setting; no figure (and none left over) without them."""
    curves, task_ends = {}, []
    for run in runs:
        results = json.loads((Path(run["dir"]) / "results.json").read_text())
        if "anytime" in results:
            curves.setdefault(run["setting"], []).append((results["anytime"]["samples"],
                                                          results["anytime"]["accuracy"]))
            task_ends = np.cumsum([e["train_samples"] for e in results["experiences"]])[:-1]
    if curves:
        plots.anytime_curves(curves, path, task_ends)
    else:
        path.unlink(missing_ok=True)


def write(out: Path, directories, runs: list[dict], rows: list[dict], shared: list[str], missing: list[Path],
          cell) -> str:
    """Make the report's figures in `out` and return the page. `runs` and `rows` (analyze.table) share their
    settings; `cell(row, column)` formats a table cell as the markdown tables do."""
    order = [row["setting"] for row in rows]
    runs = sorted(runs, key=lambda r: (order.index(r["setting"]), r["seed"]))
    seen, forgetting = experience_curves(runs)
    plots.curves_over_experiences(seen, out / "accuracy_over_experiences.png", "mean accuracy on experiences seen")
    plots.curves_over_experiences(forgetting, out / "forgetting_per_experience.png", "mean forgetting (Chaudhry)")
    matrices = {}
    for run in runs:
        matrices.setdefault(run["setting"], []).append(
            json.loads((Path(run["dir"]) / "results.json").read_text())["R"])
    plots.accuracy_matrices({s: np.mean(np.asarray(m, dtype=float), axis=0) for s, m in matrices.items()},
                            out / "accuracy_matrices.png")
    anytime_figure(runs, out / "anytime.png")

    summary = stream_summary(runs)
    best = rows[0]
    a, a_std = best["A_last"]
    summary["command"] = "<br>".join(f"<code>{html.escape(c)}</code>" for c in commands(directories)) or "-"
    summary["best setting"] = (f"<code>{html.escape(best['setting'])}</code>: A_last {a:.4f}"
                               + (f" ± {a_std:.4f} over {best['seeds']} seeds" if best["seeds"] > 1 else ""))
    summary["runs"] = f"{len(runs)} from " + ", ".join(f"<code>{html.escape(str(d))}</code>" for d in directories)
    parts = ["<h1>neurocl report</h1>", '<dl class="summary">' + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{v if k in ('command', 'best setting', 'runs') else html.escape(v)}</dd>"
        for k, v in summary.items()) + "</dl>"]

    present = [c for c in rows[0] if c not in ("setting", "seeds")]
    repeated = repeated_columns(rows)
    main = [c for c in MAIN if c in present and c not in repeated]
    rest = [c for c in present if c not in main]
    parts.append("<h2>Results</h2>")
    if shared:
        parts.append("<p>Every row also has <code>" + html.escape(" ".join(shared)) + "</code>.</p>")
    parts.append("<p>Mean ± std over seeds; best A_last first." + (" Moved to the full table: " + "; ".join(
        f"{c} ({why})" for c, why in repeated.items()) + "." if repeated else "") + "</p>")
    parts.append(html_table(rows, main, cell))
    parts.append('<h2>Figures</h2><div class="figures">' + "".join(
        figure(out / name, caption) for name, caption in FIGURES if (out / name).exists()) + "</div>")
    if rest:
        parts.append("<h2>Every other column</h2>" + html_table(rows, rest, cell))
    parts.append('<h2>Glossary</h2><dl class="glossary">' + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items()) + "</dl>")
    parts.append(f"<h2>Runs without results ({len(missing)})</h2>")
    parts.append("<ul>" + "".join(f"<li><code>{html.escape(str(d))}</code></li>" for d in missing) + "</ul>"
                 if missing else "<p>none</p>")
    parts.append("<h2>Each run</h2>")
    for run in runs:
        figures = [figure(p, p.stem.replace("_", " ")) for p in sorted(Path(run["dir"]).glob("*.png"))]
        parts.append(f"<h3><code>{html.escape(run['setting'])}</code>, seed {run['seed']} "
                     f"(<code>{html.escape(run['dir'])}</code>)</h3>" + '<div class="figures">' + "".join(figures)
                     + "</div>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>neurocl report</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
