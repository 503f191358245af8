"""The viewer in a real browser: headless Chromium driven by selenium.

view.html is loaded from file:// (no server, no network). The checks read the
page back -- the #readout element's data attributes, the hover box's text,
pixels of the canvas -- and compare them with trace.npz as saved and with the
tick convention of fig1 (test_view.fig1_cells), never with the viewer's own
code. Chromium and chromedriver come from Debian's chromium and
chromium-driver packages (.ci/run installs them); TICKPROP_CHROMIUM and
TICKPROP_CHROMEDRIVER name other binaries. Without them every test here is
skipped with a reason that says so, unless TICKPROP_REQUIRE_BROWSER=1 (set by
.ci/run when the install worked): then a missing browser fails.
"""
import base64
import csv
import io
import json
import os
import shutil
import time

import imageio.v3 as iio
import numpy as np
import pytest

from simulator.probes import Trace
from simulator.analysis import palette
from simulator.render import raster
from simulator.runner import simulate_scene
from simulator.view import trace_html
from test_view import BACKWARD, FIG1_DEPTH, FORWARD, fig1_cells, run_and_view

webdriver = pytest.importorskip(
    "selenium.webdriver",
    reason="NO BROWSER TESTS RAN: selenium is missing (pip install -e '.[test]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

TICKS = 30
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1500,1100", "--force-device-scale-factor=1")


def _binary(env, names, paths):
    if os.environ.get(env):
        return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def _find_browser():
    chromium = _binary("TICKPROP_CHROMIUM", ("chromium", "chromium-browser"),
                       ("/usr/bin/chromium", "/usr/lib/chromium/chromium"))
    driver = _binary("TICKPROP_CHROMEDRIVER", ("chromedriver",),
                     ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"))
    if chromium and driver:
        return chromium, driver
    reason = ("NO BROWSER TESTS RAN: the viewer was not checked in a browser -- "
              f"chromium {'found' if chromium else 'NOT found'}, chromedriver "
              f"{'found' if driver else 'NOT found'} (apt-get install chromium chromium-driver, "
              "or set TICKPROP_CHROMIUM / TICKPROP_CHROMEDRIVER)")
    if os.environ.get("TICKPROP_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = _find_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False,
                                           "profile.default_content_setting_values."
                                           "automatic_downloads": 1})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.downloads = downloads
    try:
        yield drv
    finally:
        drv.quit()


def wait_for(condition, timeout=20.0):
    """Poll ``condition()`` until it is true (the machine may be busy); return it."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)
    return condition()


def open_page(drv, path, viewer=True):
    """Load ``path`` from file://, wait for the viewer (when the page itself
    is one), return the console entries the load produced."""
    drv.get_log("browser")                       # forget earlier pages' entries
    drv.get("file://" + os.path.abspath(path))
    if viewer:
        assert wait_for(lambda: drv.execute_script("return !!window.tickpropView"))
    return drv.get_log("browser")


def errors(entries):
    return [e for e in entries if e["level"] in ("SEVERE", "ERROR")]


def readout(drv):
    el = drv.find_element(By.ID, "readout")
    return json.loads(el.get_attribute("data-values"))


def canvas_image(drv):
    png = drv.find_element(By.ID, "canvas").screenshot_as_png
    return iio.imread(io.BytesIO(png))[..., :3].astype(int)


@pytest.fixture(scope="module")
def fig1_page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fig1") / "run"
    page = run_and_view(folder, "fig1_constant", "--ticks", str(TICKS))
    with np.load(folder / "trace.npz") as saved:
        trace = {k: saved[k] for k in saved.files}
    return page, trace


def test_fig1_loads_from_file_without_console_errors_or_network(browser, fig1_page):
    entries = open_page(browser, fig1_page[0])
    assert errors(entries) == [], entries
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
    assert browser.find_element(By.ID, "slider").get_attribute("max") == str(TICKS - 1)


def values_match(got, trace, k):
    """The page's arrays at viewer frame k equal trace.npz's at tick k."""
    assert got["tick"] == int(trace["tick"][k])
    cols = got["columns"]
    for key in ("x_norm", "delta_norm"):
        want = trace[key][k, cols]
        assert [None if np.isnan(v) else v for v in want] == got["fields"][key], key
    cos = np.concatenate([[np.nan], trace["mismatch_cos"][k]])[cols]
    assert [None if np.isnan(v) else v for v in cos] == got["fields"]["mismatch_cos"]
    for key in ("input", "supervision", "output", "pair"):
        assert got["tags"][key] == trace["tag_" + key][k, cols].tolist(), key
    for r, c in enumerate(cols):
        idx = got["neurons"]["index"][r]
        assert idx == list(range(16))
        x = trace["state_x"][k, c, 0, idx].astype(np.float32).astype(float).tolist()
        assert got["neurons"]["x"][r] == x
        if c:
            d = trace["state_delta"][k, c, 0, idx].astype(np.float32).astype(float).tolist()
            assert got["neurons"]["delta"][r] == d


def test_slider_at_tick_k_shows_the_saved_values_of_tick_k(browser, fig1_page):
    page, trace = fig1_page
    open_page(browser, page)
    slider = browser.find_element(By.ID, "slider")
    for k in (0, 7, 23, TICKS - 1):                     # a drag: the value, then 'input'
        browser.execute_script("arguments[0].value = arguments[1];"
                               "arguments[0].dispatchEvent(new Event('input'))", slider, k)
        values_match(readout(browser), trace, k)
        assert browser.find_element(By.ID, "readout").get_attribute("data-tick") == str(k)
    slider.send_keys(Keys.HOME)                          # the keyboard
    for _ in range(13):
        slider.send_keys(Keys.ARROW_RIGHT)
    values_match(readout(browser), trace, 13)
    assert errors(browser.get_log("browser")) == []


def test_hover_box_names_the_cell_and_its_values(browser, fig1_page):
    page, trace = fig1_page
    open_page(browser, page)
    canvas = browser.find_element(By.ID, "canvas")
    width = browser.execute_script("return arguments[0].getBoundingClientRect().width", canvas)
    height = browser.execute_script("return arguments[0].getBoundingClientRect().height", canvas)
    for t, layer in ((3, 8), (11, 4), (20, 0)):
        box = browser.execute_script("return tickpropView.cellBox(arguments[0], arguments[1])",
                                     t, layer)
        ActionChains(browser).move_to_element_with_offset(
            canvas, int(box["x"] + box["w"] / 2 - width / 2),
            int(box["y"] + box["h"] / 2 - height / 2)).perform()
        text = browser.find_element(By.ID, "hover").text
        assert text.startswith(f"tick {t} · layer {layer}"), text
        shown = float(text.split("‖x‖ = ")[1].split("\n")[0])
        assert shown == pytest.approx(trace["x_norm"][t, layer], rel=1e-5)
        tag = trace["tag_input"][t, layer]
        assert f"x carries frame (input tag): {tag if tag >= 0 else 'none'}" in text
        want = fig1_cells(TICKS)[t, layer]
        assert ("δ ≠ 0, no forward frame yet" in text) == (want == BACKWARD), text


def test_play_advances_and_steps_go_both_ways(browser, fig1_page):
    page, _ = fig1_page
    open_page(browser, page)
    frame = lambda: int(browser.find_element(By.ID, "readout").get_attribute("data-frame"))  # noqa: E731
    assert frame() == 0
    browser.execute_script("var s = document.getElementById('speed'); s.value = '20';"
                           "s.dispatchEvent(new Event('change'))")
    browser.find_element(By.ID, "play").click()
    assert wait_for(lambda: frame() >= 3, 10)
    browser.find_element(By.ID, "play").click()          # pause
    stopped = frame()
    assert 3 <= stopped < TICKS - 1
    time.sleep(0.3)
    assert frame() == stopped
    browser.find_element(By.ID, "fwd").click()
    assert frame() == stopped + 1
    browser.find_element(By.ID, "back").click()
    browser.find_element(By.ID, "back").click()
    assert frame() == stopped - 1
    assert errors(browser.get_log("browser")) == []


def png_colours(trace, colour):
    """(ticks, layers, 3) RGB bytes of the PNG rasteriser (simulator.render.raster)."""
    return palette.to_bytes(raster.raster_rgb(Trace(trace, {}), colour)).transpose(1, 0, 2)


def test_raster_pixels_are_the_pngs_and_show_the_waves(browser, fig1_page):
    page, trace = fig1_page
    open_page(browser, page)
    browser.execute_script(f"tickpropView.setFrame({TICKS - 1})")   # cursor on the last column
    want = fig1_cells(TICKS)
    for colour in ("magnitude", "tag"):
        browser.execute_script("tickpropView.setColour(arguments[0])", colour)
        image = canvas_image(browser)
        assert image.std() > 10                                      # not blank
        png = png_colours(trace, colour).astype(int)
        for t in range(TICKS - 1):
            for layer in range(FIG1_DEPTH + 1):
                box = browser.execute_script(
                    "return tickpropView.cellBox(arguments[0], arguments[1])", t, layer)
                y, x = int(box["y"] + box["h"] / 2), int(box["x"] + box["w"] / 2)
                got = image[y - 2, x]            # above the sync overlay's line
                assert np.abs(got - png[t, layer]).max() <= 2, (colour, t, layer, got)
                red, green, blue = got
                bits = want[t, layer]            # the tick convention: which wave is there
                assert (red > blue + 60) == (bits == FORWARD), (t, layer, got)
                assert (blue > red + 60) == (bits == BACKWARD), (t, layer, got)
                assert (min(red, blue) > green + 15) == (bits == FORWARD | BACKWARD)


def test_neuron_choice_and_exports(browser, fig1_page):
    page, trace = fig1_page
    open_page(browser, page)
    box = browser.find_element(By.ID, "neurons")
    box.send_keys(Keys.CONTROL + "a" + Keys.NULL + "2-4, 9" + Keys.ENTER)
    got = readout(browser)
    assert all(idx == [2, 3, 4, 9] for idx in got["neurons"]["index"])
    box.send_keys(Keys.CONTROL + "a" + Keys.NULL + "twelve" + Keys.ENTER)
    assert browser.find_element(By.ID, "neuronmsg").text != ""
    assert readout(browser)["neurons"]["index"][0] == [2, 3, 4, 9]      # kept
    browser.execute_script("tickpropView.setFrame(6)")
    png = browser.execute_async_script(
        "var done = arguments[0]; tickpropView.exportPNG(function (b) {"
        " var r = new FileReader(); r.onload = function () { done([b.type, r.result]); };"
        " r.readAsDataURL(b); })")
    assert png[0] == "image/png"
    exported = iio.imread(base64.b64decode(png[1].split(",")[1]))
    assert exported.shape[:2] == canvas_image(browser).shape[:2]
    text = browser.execute_async_script(
        "var done = arguments[0]; tickpropView.exportCSV(function (b) { b.text().then(done); })")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["tick"] for r in rows} == {"6"}
    x_norm = {int(r["row"]): float(r["value"]) for r in rows if r["quantity"] == "x_norm"}
    assert x_norm == {l: trace["x_norm"][6, l] for l in range(FIG1_DEPTH + 1)}
    x5 = {int(r["neuron"]): float(r["value"]) for r in rows
          if r["quantity"] == "x" and r["row"] == "5"}
    assert x5 == {n: float(np.float32(trace["state_x"][6, 5, 0, n])) for n in (2, 3, 4, 9)}
    for button, name in (("png", "fig1_constant_tick6.png"), ("csv", "fig1_constant_tick6.csv")):
        browser.find_element(By.ID, button).click()      # the buttons download files
        assert wait_for(lambda: name in os.listdir(browser.downloads)), os.listdir(
            browser.downloads)
    assert iio.imread(browser.downloads / "fig1_constant_tick6.png").shape == exported.shape
    assert errors(browser.get_log("browser")) == []


@pytest.mark.parametrize("scene, args", [
    ("ar_converge", ("--set", "relaxation.iterations=20")),
    ("pc_wave", ()),
    ("residual_levelling", ("--ticks", "12")),
])
def test_relaxation_pc_and_graph_views_load_without_errors(browser, tmp_path, scene, args):
    page = run_and_view(tmp_path / scene, scene, *args)
    entries = open_page(browser, page)
    assert errors(entries) == [], entries
    views = browser.execute_script("return tickpropView.payload.views.length")
    for v in range(views):                    # every view draws, at its first and last tick
        browser.execute_script("tickpropView.setView(arguments[0])", v)
        for k in (0, browser.execute_script("return tickpropView.payload.ticks.length") - 1):
            browser.execute_script("tickpropView.setFrame(arguments[0])", k)
            assert readout(browser)["frame"] == k
    image = canvas_image(browser)
    assert image.std() > 10
    assert errors(browser.get_log("browser")) == []
    if scene == "pc_wave":
        with np.load(tmp_path / scene / "wave.npz") as saved:
            got = readout(browser)            # per vertex, the last tick
            assert got["fields"]["eps"] == saved["by_vertex"][-1, got["columns"]].tolist()


def test_notebook_iframe_shows_the_viewer(browser, tmp_path):
    trace = simulate_scene("fig1_constant", "run.ticks=12")
    page = tmp_path / "notebook.html"
    page.write_text("<!DOCTYPE html><html><body><p>cell output</p>" + trace_html(trace)
                    + "</body></html>", encoding="utf-8")
    entries = open_page(browser, page, viewer=False)
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        assert wait_for(lambda: browser.execute_script("return !!window.tickpropView"))
        browser.execute_script("tickpropView.setFrame(5)")
        assert readout(browser)["fields"]["x_norm"] == trace["x_norm"][5].tolist()
    finally:
        browser.switch_to.default_content()
    assert errors(entries + browser.get_log("browser")) == []
