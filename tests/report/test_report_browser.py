"""The HTML report in a real headless Chromium: it loads without errors and shows tables and images."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from koforge.report import build_report
from report_fixtures import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected into a copy of the page: records script/resource errors, then after `load` writes what the
# browser decoded into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__errs=[];window.addEventListener('error',e=>window.__errs.push(String(e.message||(e.target&&e.target.tagName)||e.type)),true);
window.addEventListener('load',()=>{const imgs=[...document.images];const d=document.createElement('pre');d.id='koforge-probe';
d.textContent=JSON.stringify({images:imgs.length,decoded:imgs.filter(i=>i.complete&&i.naturalWidth>0).length,
widths:imgs.map(i=>i.naturalWidth),tables:document.querySelectorAll('table.koforge-table').length,
rows:document.querySelectorAll('table.koforge-table tbody tr').length,
visible:[...document.querySelectorAll('table.koforge-table,img')].every(e=>e.getBoundingClientRect().width>0),
errors:window.__errs});document.body.appendChild(d);});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    a, b = make_run(tmp_path / "a", 0.42), make_run(tmp_path / "b", 0.61)
    page = build_report([a, b], tmp_path / "out")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    m = re.search(r'<pre id="koforge-probe">([^<]*)</pre>', out.stdout)
    assert m, f"no probe output (rc={out.returncode}): {out.stderr[-2000:]}"
    probe_data = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe_data["errors"] == []
    assert probe_data["images"] == 3 and probe_data["decoded"] == 3, probe_data
    assert all(w > 0 for w in probe_data["widths"])
    assert probe_data["tables"] >= 8 and probe_data["rows"] >= 12 and probe_data["visible"], probe_data
    # The text the reader sees, as the browser parsed it.
    assert "Comparison · korsts" in out.stdout and "koforge-bpe" in out.stdout
