"""The explorer page (``results/explorer.html``): built from a synthetic run, it holds every
model, task and step of the table and loads nothing from the network; opened from ``file://``
in a real headless Chromium (Debian's, driven by Selenium), the transfer matrix it shows at a
step, task and view, and its hover label, are the ``transfer-matrices`` CSV's cell."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from synthetic_tables import analyse_arguments, synthetic_table, write_run

from mlm_dynamics import __main__ as cli
from mlm_dynamics import explorer
from mlm_dynamics.analysis import tables
from mlm_dynamics.errors import InputError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NO_CHROMIUM = "no Chromium: apt-get install chromium chromium-driver"
VIEWS = ["last", "best", "layer-2"]
STEP, TASK, VIEW = 200, "pos", "last"  # what the browser test shows
TRAIN, TEST = "ru", "en"  # the cell it hovers and clicks (not the pair shown first)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic run, its analysis, the explorer page and the POS transfer-matrix CSVs."""
    root = tmp_path_factory.mktemp("explorer")
    table_path, items = write_run(root)
    assert cli.main(analyse_arguments(table_path, items, root / "analysis")) == 0
    page = root / "explorer.html"
    explorer.main(
        "explorer",
        ["--table", str(table_path), "--analysis-dir", str(root / "analysis"),
         "--views", "last", "best", "2", "--out", str(page)],
    )  # fmt: skip
    table = tables.read_table(table_path)
    model = table["model"].iloc[0]
    tables.transfer_matrices(table, model, TASK, None, None, VIEWS, root / "matrices", "table")
    return root, table, page


def embedded(page: Path) -> dict:
    html = page.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', html,
                      re.S)  # fmt: skip
    return json.loads(match.group(1))


def matrix_csv(root: Path, step: int, view: str) -> pd.DataFrame:
    return pd.read_csv(root / "matrices" / f"{step}_{view}.csv", index_col="train_lang")


# ---------------------------------------------------------------- the file


def test_the_page_loads_nothing_from_the_network(run):
    html = run[2].read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I), "a <script src=...>"
    assert not re.search(r"<link[^>]*\shref\s*=\s*[\"']?(https?:)?//", html, re.I)
    assert "Plotly" in html and len(html) > 3_000_000  # plotly.js is in the page


def test_every_model_task_and_step_is_in_the_page(run):
    root, table, page = run
    data = embedded(page)
    assert [m["name"] for m in data["models"]] == sorted(table["model"].unique())
    (model,) = data["models"]
    assert model["steps"] == sorted(table["step"].unique().tolist())
    probes = table[(table["metric"] == "accuracy") & (table["layer"] >= 0)]
    assert set(model["transfer"]) == set(probes["task"]) == set(model["inlang"])
    for task, matrix in model["transfer"].items():
        assert matrix["steps"] == sorted(probes.loc[probes["task"] == task, "step"].unique())
        assert list(matrix["views"]) == VIEWS
    assert model["bpc"]["metric"] == "bpc_pll" and model["bpc"]["label"] == "pseudo-log-likelihood"
    assert set(model["simalign"]) == {"simalign-argmax", "simalign-itermax"}
    assert model["inlang"]["pos"]["selectivity"] is not None
    assert model["inlang"]["arc"]["selectivity"] is None  # no control task for arcs
    for stem in ("onset", "final_layer_gap", "degradation"):
        csv = pd.read_csv(root / "analysis" / f"{stem}.csv", dtype=str, keep_default_na=False)
        assert model["analyses"][stem]["rows"] == csv.to_numpy().tolist()


def test_the_page_is_the_same_bytes_every_run(run, tmp_path):
    root, table, page = run
    views = ["last", "best", "layer-2"]
    analyses = explorer.read_analyses(root / "analysis")
    again = explorer.build_explorer(
        table, explorer.all_cells(table, views), analyses, tmp_path / "again.html", views
    )
    assert again.read_bytes() == page.read_bytes()


def test_the_embedded_matrix_is_the_csv_at_every_step_and_view(run):
    root, _, page = run
    matrix = embedded(page)["models"][0]["transfer"][TASK]
    for s, step in enumerate(matrix["steps"]):
        for view in VIEWS:
            csv = matrix_csv(root, step, view).loc[matrix["langs"], matrix["langs"]]
            shown = pd.DataFrame(matrix["views"][view]["value"][s], dtype=float)
            assert (shown.to_numpy() - 100 * csv.to_numpy()).__abs__().max() <= 0.0051


def test_several_models_each_get_their_rows():
    table = tables.tidy_table(synthetic_table(steps=[0, 100], languages=["en", "de", "ru"],
                                              xnli=False, simalign=False))  # fmt: skip
    other = table[table["step"] == 100].assign(model="other")
    both = pd.concat([table, other], ignore_index=True)
    data = explorer.explorer_data(both, explorer.all_cells(both, ["last"]), {}, ["last"])
    assert [m["name"] for m in data["models"]] == ["other", "tiny-xlmr"]
    assert [m["steps"] for m in data["models"]] == [[100], [0, 100]]
    assert data["models"][0]["bpc"]["steps"] == [100]


def test_a_missing_analysis_table_is_refused_in_one_line(run, tmp_path):
    root = run[0]
    (tmp_path / "onset.csv").write_bytes((root / "analysis" / "onset.csv").read_bytes())
    with pytest.raises(InputError, match=r"final_layer_gap.csv: missing"):
        explorer.read_analyses(tmp_path)


def test_the_size_projection_builds_a_page_of_a_given_shape():
    size = explorer.projected_size(
        steps=3, layers=3, transfer=3, in_language=4, bpc=4, views=["last"]
    )
    assert 3_000_000 < size < 6_000_000  # plotly.js and a little data


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from Debian's package; Selenium Manager never runs (the driver's
    path is given) and nothing is downloaded."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(NO_CHROMIUM)
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip(NO_CHROMIUM)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1500,1100", "--hide-scrollbars", f"--user-data-dir={profile}",
                     "--force-device-scale-factor=1"]:  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager, were it to run, fetches nothing
        driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition, timeout=15.0):
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


def save_screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    artifacts = os.environ.get("PYTEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)


MATRIX_JS = """
var gd = document.getElementById('explorer-matrix'), t = gd.data[0];
return {z: t.z, x: t.x, y: t.y, customdata: t.customdata, step: gd.getAttribute('data-step'),
        task: gd.getAttribute('data-task'), view: gd.getAttribute('data-view')};
"""
# Where a cell of the heatmap is, in pixels from the plot div's centre (Selenium's origin).
CELL_JS = """
var gd = document.getElementById('explorer-matrix'), box = gd.getBoundingClientRect();
var xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
return [xa._offset + xa.d2p(arguments[1]) - box.width / 2,
        ya._offset + ya.d2p(arguments[0]) - box.height / 2];
"""


def test_the_browser_shows_the_csv_cell_at_the_chosen_step_task_and_view(browser, run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    root, table, page = run
    driver = browser
    driver.get(page.as_uri())
    assert wait_for(lambda: driver.execute_script("return document.body.dataset.ready;"))
    Select(driver.find_element(By.ID, "explorer-task")).select_by_value(TASK)
    Select(driver.find_element(By.ID, "explorer-view")).select_by_value(VIEW)
    steps = embedded(page)["models"][0]["transfer"][TASK]["steps"]
    slider = driver.find_element(By.ID, "explorer-step")
    slider.send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * steps.index(STEP))  # as a person would
    assert driver.find_element(By.ID, "explorer-step-label").text == str(STEP)

    shown = driver.execute_script(MATRIX_JS)
    assert (shown["step"], shown["task"], shown["view"]) == (str(STEP), TASK, VIEW)
    csv = matrix_csv(root, STEP, VIEW)
    cells = tables.transfer_cells(table, table["model"].iloc[0], TASK, VIEWS)
    last = int(cells["layer"].max())
    for i, train in enumerate(shown["y"]):
        for j, test in enumerate(shown["x"]):
            assert shown["z"][i][j] == pytest.approx(100 * csv.loc[train, test], abs=0.0051)
            assert shown["customdata"][i][j][2] == last

    # hover the cell with the mouse: the label is the CSV's value, its interval and layer
    i, j = shown["y"].index(TRAIN), shown["x"].index(TEST)
    dx, dy = driver.execute_script(CELL_JS, TRAIN, TEST)
    matrix = driver.find_element(By.ID, "explorer-matrix")
    ActionChains(driver).move_to_element_with_offset(matrix, round(dx), round(dy)).perform()
    label = wait_for(lambda: driver.execute_script(
        "var h = document.querySelector('#explorer-matrix .hoverlayer .hovertext');"
        "return h && Array.from(h.querySelectorAll('tspan.line')).map(t => t.textContent);"
    ))  # fmt: skip
    cell = cells[(cells["step"] == STEP) & (cells["view"] == VIEW)]
    cell = cell[(cell["train_lang"] == TRAIN) & (cell["test_lang"] == TEST)].iloc[0]
    assert label[0] == f"train {TRAIN} → test {TEST}"
    accuracy = float(re.fullmatch(r"accuracy ([\d.]+)%", label[1]).group(1))
    assert accuracy == pytest.approx(100 * csv.loc[TRAIN, TEST], abs=0.051)
    low, high = map(float, re.fullmatch(r"95% CI \[([\d.]+), ([\d.]+)\]", label[2]).groups())
    assert (low, high) == pytest.approx((100 * cell.ci_low, 100 * cell.ci_high), abs=0.051)
    assert label[3] == f"layer {last}"
    save_screenshot(driver, tmp_path / "explorer.png")

    # click it: the pair's curve over steps is the CSVs' cell at every step
    pair_js = "return document.getElementById('explorer-pair').getAttribute('data-pair');"
    assert driver.execute_script(pair_js) != f"{TRAIN},{TEST}"
    ActionChains(driver).click().perform()
    assert wait_for(lambda: driver.execute_script(pair_js) == f"{TRAIN},{TEST}")
    traces = driver.execute_script(
        "return document.getElementById('explorer-pair').data"
        ".filter(t => t.name).map(t => [t.name, t.x, t.y]);"
    )
    assert [name for name, _, _ in traces] == [f"{TRAIN} → {TEST}", f"{TRAIN} (in-language)",
                                               f"{TEST} (in-language)"]  # fmt: skip
    pairs = [(TRAIN, TEST), (TRAIN, TRAIN), (TEST, TEST)]
    for (_, x, y), (train, test) in zip(traces, pairs, strict=True):
        expected = [100 * matrix_csv(root, step, VIEW).loc[train, test] for step in x]
        assert y == pytest.approx(expected, abs=0.0051)

    # the analysis table: every word of the filter must match a row
    words = "pos transfer"
    driver.find_element(By.ID, "explorer-filter").send_keys(words)
    onset = pd.read_csv(root / "analysis" / "onset.csv", dtype=str, keep_default_na=False)
    texts = ["\t".join(row).lower() for row in onset.to_numpy().tolist()]
    expected = sum(all(word in text for word in words.split()) for text in texts)
    assert 0 < expected < len(texts)
    table_element = driver.find_element(By.ID, "explorer-analysis-table")
    assert wait_for(lambda: table_element.get_attribute("data-rows") == str(expected))
    assert len(table_element.find_elements(By.CSS_SELECTOR, "tbody tr")) == min(expected, 500)
    driver.execute_script("document.getElementById('section-analyses').scrollIntoView();")
    save_screenshot(driver, tmp_path / "explorer-analysis.png")

    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


@pytest.mark.e2e
def test_the_workflow_page_shows_the_last_steps_pos_matrix(browser, reference, tmp_path):
    """The run's own page (the reduced default's ``results/explorer.html``), opened offline: POS
    at the last step, last layer, is ``results/tables/transfer/tiny-xlmr/pos/{step}_last.csv``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = reference / "results/explorer.html"
    steps = embedded(page)["models"][0]["transfer"]["pos"]["steps"]
    driver = browser
    driver.get(page.as_uri())
    assert wait_for(lambda: driver.execute_script("return document.body.dataset.ready;"))
    Select(driver.find_element(By.ID, "explorer-task")).select_by_value("pos")
    Select(driver.find_element(By.ID, "explorer-view")).select_by_value("last")
    driver.find_element(By.ID, "explorer-step").send_keys(Keys.END)
    shown = driver.execute_script(MATRIX_JS)
    assert (shown["step"], shown["task"], shown["view"]) == (str(steps[-1]), "pos", "last")
    csv = pd.read_csv(
        reference / f"results/tables/transfer/tiny-xlmr/pos/{steps[-1]}_last.csv",
        index_col="train_lang",
    )
    assert sorted(shown["y"]) == sorted(csv.index) and sorted(shown["x"]) == sorted(csv.columns)
    for i, train in enumerate(shown["y"]):
        for j, test in enumerate(shown["x"]):
            assert shown["z"][i][j] == pytest.approx(100 * csv.loc[train, test], abs=0.0051)
    save_screenshot(driver, tmp_path / "explorer-workflow.png")
