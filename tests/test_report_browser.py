"""The design-review report in a real headless browser (Debian's chromium, Playwright).

``maforecast review`` writes the HTML report of two candidates (configs from transformers' own
config classes); chromium opens the file with every network request refused, and must find the
per-layer chart, the precision-risk matrix and the ranked mitigations of both candidates, side by
side, and nothing it tried to fetch. A screenshot goes to the test's tmp dir (path printed) and,
when ``MAFORECAST_REVIEW_SCREENSHOT`` names a file, there too (how docs/review_report.png is made).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from review_helpers import champion_home, use_home, write_hf_configs

from maforecast.cli import main
from predictor.precision import FORMATS, TARGET_FORMATS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("review")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed (`make sysdeps` installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def report(tmp_path_factory, migrated_mlflow_db, tmp_path, monkeypatch, capsys) -> tuple[Path, dict]:
    """report.html and review.json of two candidates (Llama and Gemma 3 text), FP8 training target."""
    use_home(monkeypatch, champion_home(tmp_path_factory, migrated_mlflow_db))
    configs = write_hf_configs(tmp_path / "candidates")
    html, out = tmp_path / "report.html", tmp_path / "review.json"
    with pytest.raises(SystemExit) as info:
        main(["review", str(configs["llama"]), str(configs["gemma3"]), "--precision-target", "fp8_training",
              "--html", str(html), "--json", str(out)])
    capsys.readouterr()
    answer = json.loads(out.read_text())
    assert info.value.code == answer["exit_code"]
    return html, answer


def test_report_in_chromium_shows_chart_matrix_and_mitigations(browser, report, tmp_path):
    html, answer = report
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    fetched: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "about:")):
            return r.continue_()
        fetched.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    try:
        page.goto(html.as_uri(), wait_until="load")
        assert page.title().startswith("Design review")

        # verdict table: one row per candidate, sorted by risk, naming the broken rules
        rows = page.locator("table.verdicts tr[data-status]")
        assert rows.count() == 2
        assert [rows.nth(i).get_attribute("data-status") for i in range(2)] == [c["status"] for c in answer["candidates"]]

        articles = page.locator("article.candidate")
        assert articles.count() == 2
        boxes = [articles.nth(i).bounding_box() for i in range(2)]
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[0]["x"] < boxes[1]["x"]  # side by side
        n_layers = {"llama": 8, "gemma3": 6}
        for i in range(2):
            art = articles.nth(i)
            name = art.get_attribute("data-name")
            # the chart: one line and one band per layer, the peak |a| dots, the precision limits
            chart = art.locator("figure.chart")
            chart.scroll_into_view_if_needed()
            assert chart.locator("svg.chart-ratio").is_visible() and chart.locator("svg.chart-peak").is_visible()
            assert chart.locator("polyline.layer-line").count() == n_layers[name]
            assert chart.locator("polygon.band").count() == n_layers[name]
            assert chart.locator("circle.peak").count() == n_layers[name]
            assert chart.locator("line.limit").count() >= 3
            assert chart.locator("svg.chart-ratio").bounding_box()["width"] > 300
            # the risk matrix: format x layer, the target formats marked
            matrix = art.locator("table.risk-matrix")
            assert matrix.is_visible()
            assert matrix.locator("tr[data-format]").count() == len(FORMATS)
            assert matrix.locator("tr.target").count() == len(TARGET_FORMATS["fp8_training"])  # its recipes and E5M2
            assert matrix.locator("tr[data-format='fp8_e4m3'] td.cell").count() == n_layers[name]
            # ranked mitigations with effect and citations
            mit = art.locator("ol.mitigations > li.mitigation")
            assert mit.count() >= 1 and mit.first.is_visible()
            assert mit.first.locator("table.effect").count() == 1
            assert mit.first.locator("ul.citations a").first.inner_text().startswith("arXiv:")
            assert art.locator("table.rules").is_visible()
        # what changes in risk between the two, and why
        comp = page.locator("div.comparison")
        assert comp.count() == 1 and "gemma3 vs llama" in comp.inner_text()
        assert "P(limit crossed)" in comp.inner_text()

        shot = tmp_path / "review_report.png"
        page.screenshot(path=str(shot), full_page=True)
        print("screenshot:", shot)
        assert shot.stat().st_size > 50_000
        if target := os.environ.get("MAFORECAST_REVIEW_SCREENSHOT"):
            # the docs image: from the top down to the first ranked mitigation of the candidates
            bottom = articles.nth(0).locator("ol.mitigations > li.mitigation").first.evaluate(
                "el => el.getBoundingClientRect().bottom + window.scrollY")
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=target, full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": bottom + 16})
            print("screenshot:", target)
    finally:
        ctx.close()
    assert fetched == [], f"the report tried to fetch: {fetched}"
