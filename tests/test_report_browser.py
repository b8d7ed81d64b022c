"""report.html as a person sees it: rendered by headless Chromium (Debian's, installed by `make setup`) at
1,400 px, no table overflows the page (wide ones scroll in their own box) and every figure is shown at its
natural width, or wider than 800 px when it is wider than the page. The old stylesheet fails the same check."""

import html
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from conftest import compose
from neurocl import analyze
from neurocl.run import execute

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("NEUROCL_REQUIRE_CHROMIUM"),
                                reason="no chromium: `make setup` installs Debian's (as root), or apt-get install chromium")
OLD_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:560px}figure{display:inline-block}")
# Run in the page once everything is loaded: where each table ends, how wide each image is shown.
MEASURE = """<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const scroller = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return p; } return null; };
  const tables = [...document.querySelectorAll('table')].map(t => {
    const box = scroller(t);
    return {right: t.getBoundingClientRect().right, box_right: box ? box.getBoundingClientRect().right : null}; });
  const images = [...document.images].map(i => ({alt: i.alt, natural: i.naturalWidth,
                                                 shown: i.getBoundingClientRect().width}));
  const out = document.createElement('pre'); out.id = 'measured';
  out.textContent = JSON.stringify({vw: vw, page: document.documentElement.scrollWidth, tables: tables, images: images});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """report.html of a digits sweep: the store and NCM, two seeds each, as neurocl.analyze writes it."""
    root = tmp_path_factory.mktemp("report")
    for num, (memory, seed) in enumerate((m, s) for m in ("prototypes", "ncm") for s in (0, 1)):
        overrides = ["experiment=digits_quick", f"memory={memory}", f"seed={seed}"]
        execute(compose(*overrides, f"paths.cache_dir={root / 'cache'}"), root / "sweep" / str(num))
        (root / "sweep" / str(num) / ".hydra").mkdir()
        (root / "sweep" / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    analyze.main([str(root / "sweep"), "--out", str(root / "out")])
    return root / "out" / "report.html"


def measure(page: str, tmp_path, width: int = 1400) -> dict:
    assert CHROMIUM, "NEUROCL_REQUIRE_CHROMIUM is set, but no chromium is installed (apt-get install chromium)"
    path = tmp_path / "measured.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000", "--virtual-time-budget=10000",
         "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = done.stdout.split('<pre id="measured">', 1)[1].split("</pre>", 1)[0]
    return json.loads(html.unescape(measured))


def layout_problems(m: dict) -> list[str]:
    problems = [f"the page is {m['page']} px wide in a {m['vw']} px window"] if m["page"] > m["vw"] else []
    for i, t in enumerate(m["tables"]):
        inside = t["box_right"] is not None and t["box_right"] <= m["vw"] + 1
        if t["right"] > m["vw"] + 1 and not inside:
            problems.append(f"table {i} ends at {t['right']:.0f} px, past the {m['vw']} px page, and does not scroll")
    for image in m["images"]:
        readable = image["shown"] >= image["natural"] - 1 or (image["natural"] > 800 and image["shown"] > 800)
        if not readable:
            problems.append(f"{image['alt']!r}: {image['natural']} px shown at {image['shown']:.0f} px")
    return problems


def test_the_report_reads_well_in_a_real_browser(report, tmp_path):
    page = report.read_text()
    measured = measure(page, tmp_path)
    assert len(measured["images"]) >= 10 and len(measured["tables"]) >= 2
    assert not layout_problems(measured), layout_problems(measured)
    old = measure(page.split("<style>")[0] + f"<style>{OLD_STYLE}</style>" + page.split("</style>", 1)[1], tmp_path)
    assert any("shown at" in p for p in layout_problems(old)), "the check cannot fail: the old CSS passes it"


def test_the_report_says_what_was_run_and_defines_its_columns(report):
    page = report.read_text()
    for item in ("dataset", "stream", "class order", "encoder", "commit", "command", "best setting"):
        assert f"<dt>{item}</dt>" in page
    assert "ClassIncremental: 5 experiences x 2 classes" in page and "0 1 | 2 3 | 4 5 | 6 7 | 8 9" in page
    assert "<h2>Glossary</h2>" in page and "<dt>forgetting_chaudhry</dt>" in page
    assert "`" not in page.split("<body>", 1)[1].replace("<code>", "")  # no Markdown left raw
    main_table = page.split("<h2>Results</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th>FWT</th>" not in main_table and "FWT (0 in every row)" in page  # moved, and said so
    order = [page.index("<code>memory=prototypes</code>, seed"), page.index("<code>memory=ncm</code>, seed")]
    assert order == sorted(order)  # each run in the main table's order (the store's A_last is higher)


def test_calibration_columns_for_runs_with_one_condition_and_one_readout(report):
    runs = analyze.load_runs([report.parent.parent / "sweep"])
    ncm = [run for run in runs if "memory=ncm" in run["setting"]]
    assert ncm and all(np.isfinite(run["ECE"]) and np.isfinite(run["AURC"]) for run in ncm)
    assert analyze.condition_columns({"clean": {"memory": {"accuracy": 0.9, "ece": 0.1, "aurc": 0.02}}}) == \
        {"ECE": 0.1, "AURC": 0.02}
