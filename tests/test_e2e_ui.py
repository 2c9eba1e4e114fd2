"""The MLflow UI and the service's own UI in a real headless browser (Debian's chromium, Playwright).

The MLflow UI of the shared ``mlflow server`` (after the whole pipeline ran twice, see
``sqlite_tracking_server`` in conftest.py) must show the registered model ``maforecast-predictor``
with both versions, their aliases and headline metric tags, and the compare view must show the
runs' metrics side by side. The service, started as a real ``bentoml serve`` process that loads
its champion from that server, must serve its UI at ``/``.

Only 127.0.0.1 is reachable from the browser: every other request is aborted (the BentoML page
embeds Google Tag Manager) and chromium resolves no other host. Screenshots go to the test's tmp
dir (their paths are printed).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from conftest import free_port, server_env, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-server")]

MODEL = "maforecast-predictor"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


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
def page(browser):
    """A page that can reach 127.0.0.1 only; ``page.blocked`` lists what it tried elsewhere."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(45_000)
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
            return r.continue_()
        blocked.append(url)
        return r.abort()

    pg.route("**/*", route)
    pg.blocked = blocked
    yield pg
    ctx.close()


def _fmt_metric(v: float) -> str:
    """How the MLflow UI prints a metric: rounded to 3 decimals, trailing zeros dropped."""
    return f"{round(v, 3):g}"


def test_mlflow_ui_shows_both_predictor_versions_and_metrics(sqlite_tracking_server, page, tmp_path):
    from mlflow.tracking import MlflowClient

    url = sqlite_tracking_server["url"]
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name='{MODEL}'")}
    assert {"1", "2"} <= set(versions)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    challenger = str(client.get_model_version_by_alias(MODEL, "challenger").version)

    # the registered model page: every version, its aliases and the headline metric tags
    page.goto(f"{url}/#/models/{MODEL}", wait_until="load")
    page.get_by_text("Version 2", exact=True).wait_for()
    page.get_by_text("Version 1", exact=True).wait_for()
    page.screenshot(path=str(tmp_path / "mlflow-registered-model.png"), full_page=True)
    print("screenshot:", tmp_path / "mlflow-registered-model.png")
    body = page.inner_text("body")
    for v, mv in versions.items():
        assert f"Version {v}" in body
        assert mv.tags["headline_skill"] in body, (v, mv.tags["headline_skill"])
        assert mv.run_id in body  # the run_id tag links each version to its training run
    # the alias sits in the row of its version: the text between "Version N" and the next row
    for alias, v in (("champion", champion), ("challenger", challenger)):
        row = body.split(f"Version {v}", 1)[1].split("Version ", 1)[0]
        assert re.search(rf"@\s*{alias}\b", row), (alias, v, row[:400])

    # compare view (select both versions, press Compare): the runs' metrics side by side
    boxes = page.locator("input[type=checkbox]")
    assert boxes.count() == len(versions) + 1  # header + one per version
    for i in range(1, boxes.count()):
        boxes.nth(i).check()
    page.get_by_test_id("compareButton").click()
    page.wait_for_url("**/compare-model-versions**")
    page.get_by_text(f"Comparing {len(versions)} Versions").wait_for()
    page.get_by_text("headline_skill", exact=True).first.wait_for(state="attached")
    page.screenshot(path=str(tmp_path / "mlflow-compare-versions.png"), full_page=True)
    print("screenshot:", tmp_path / "mlflow-compare-versions.png")
    body = page.inner_text("body")
    order = [line.split("\t")[1:] for line in body.splitlines() if line.startswith("Model Version:")][0]
    assert sorted(order) == sorted(versions)
    metrics = {v: client.get_run(versions[v].run_id).data.metrics for v in order}
    # "Show diff only" is on: a metric row is listed when the versions differ, as the headline does
    # here (the two runs gave the protocol terms different prior widths)
    key = "headline_skill"
    assert len({_fmt_metric(metrics[v][key]) for v in order}) > 1
    want = "\t".join([key, *(_fmt_metric(metrics[v][key]) for v in order)])
    assert want in body, (want, [line for line in body.splitlines() if line.startswith(key)])
    shown = [line for line in body.splitlines() if re.match(r"^[\w.]+(\t-?[\d.e+-]+|\t-){2}$", line)]
    assert len(shown) >= 10, shown  # many more per-target metrics are compared
    for v in order:
        assert versions[v].run_id in body
    assert not [u for u in page.blocked if "mlflow" in urlparse(u).path], page.blocked


def test_service_ui_and_champion_from_tracking_server(sqlite_tracking_server, page, spawn, tmp_path):
    """A real ``bentoml serve`` process loads its champion from the server; its UI at / renders."""
    from service.cli import project_root, serve_command

    url = sqlite_tracking_server["url"]
    port = free_port()
    env = server_env(url, tmp_path / "service-home")
    proc = spawn.start(serve_command("127.0.0.1", port), "bentoml-serve", env=env, cwd=project_root())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", 240, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{spawn.log_tail(proc)}") from None
    info = httpx.get(f"{base}/model_info", timeout=10).json()
    assert info["tracking_uri"] == url
    from mlflow.tracking import MlflowClient

    champion = MlflowClient(tracking_uri=url, registry_uri=url).get_model_version_by_alias(MODEL, "champion")
    assert info["predictor"]["version"] == str(champion.version)

    # the documented Python client against the real process
    import bentoml

    with bentoml.SyncHTTPClient(base) as client:
        answer = client.predict(name="neox-400m", n_layers=24, d_model=1024, n_heads=16, d_ffn=4096, total_steps=143000)
        # a numeric field outside the training range (planned steps): its warning must decode too
        short = client.predict(name="short", n_layers=6, d_model=512, n_heads=8, d_ffn=2048, total_steps=2000)
    assert answer["predictor"]["version"] == str(champion.version) and len(answer["layers"]) == 24
    assert any(w["field"] == "planned_steps" for w in short["applicability"]), short["applicability"]

    page.goto(f"{base}/", wait_until="load")
    page.get_by_text("/predict", exact=True).first.wait_for()
    assert "BentoML" in page.title()
    body = page.inner_text("body")
    for route in ("/predict", "/predict_batch", "/readyz"):
        assert route in body, route
    page.screenshot(path=str(tmp_path / "service-ui.png"), full_page=True)
    print("screenshot:", tmp_path / "service-ui.png")
    # only third-party trackers were refused; the page itself came from 127.0.0.1
    assert all(urlparse(u).hostname != "127.0.0.1" for u in page.blocked)
    assert Path(tmp_path / "service-ui.png").stat().st_size > 10_000
