"""The viewer as a reader sees it, in headless Chromium at 1280×720 and 1920×1080.

Every panel fits the window (no horizontal scrolling), no two drawn texts overlap
(the page records each text's box as it draws it), the hover box hides when the
picture changes, tag colouring gives each stream frame its shade as the PNGs do
(simulator.render.raster, a separate implementation), and the mismatch panel's
cursor line sits on the scrubbed tick's column. Runs are made through the CLI;
the browser harness is test_viewer_browser's.
"""
import numpy as np
import pytest

from test_view import run_and_view
from test_viewer_browser import (browser, canvas_image, errors, open_page,  # noqa: F401
                                 png_colours, readout, wait_for)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

SIZES = [(1280, 720), (1920, 1080)]
SCENES = {"fig1": ("fig1_constant", "--ticks", "30"),
          "conv": ("conv_digits", "--ticks", "40"),
          "levelled": ("residual_levelling", "--ticks", "20", "--set", "network.levelled=true")}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = {}
    for key, (scene, *args) in SCENES.items():
        folder = tmp_path_factory.mktemp(key) / "run"
        page = run_and_view(folder, scene, *args)
        with np.load(folder / "trace.npz") as saved:
            out[key] = (page, {k: saved[k] for k in saved.files if k != "schema"})
    return out


def viewport(drv, width, height):
    """Make the page's viewport (innerWidth × innerHeight) ``width`` × ``height``."""
    drv.set_window_size(width, height)
    inner = drv.execute_script("return [innerWidth, innerHeight]")
    drv.set_window_size(2 * width - inner[0], 2 * height - inner[1])
    assert drv.execute_script("return [innerWidth, innerHeight]") == [width, height]


def overlaps(boxes):
    """Pairs of drawn texts whose boxes overlap (by more than half a pixel)."""
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["w"] - 0.5 and b["x"] < a["x"] + a["w"] - 0.5
                    and a["y"] < b["y"] + b["h"] - 0.5 and b["y"] < a["y"] + a["h"] - 0.5):
                out.append((a["text"], b["text"]))
    return out


def test_overlaps_finds_overlapping_boxes():
    box = {"text": "x at cursor", "x": 10, "y": 5, "w": 80, "h": 12}
    assert overlaps([box, dict(box, text="δ at cursor", x=60)]) == [("x at cursor",
                                                                     "δ at cursor")]
    assert overlaps([box, dict(box, x=91), dict(box, y=17.5)]) == []


def fits(drv):
    """(page width, viewport width, canvas right edge) of the current picture."""
    return drv.execute_script(
        "return [document.documentElement.scrollWidth, innerWidth,"
        " document.getElementById('canvas').getBoundingClientRect().right]")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("key", list(SCENES))
def test_every_panel_fits_and_no_texts_overlap(browser, pages, key, size):
    viewport(browser, *size)
    entries = open_page(browser, pages[key][0])
    assert errors(entries) == [], entries
    height = browser.execute_script("return [document.documentElement.scrollHeight,"
                                    " innerHeight]")
    assert height[0] <= height[1], f"{key} at {size}: the page scrolls down ({height})"
    modes = ["tickpropView.setColour('tag')", "tickpropView.setCurve('mismatch_rel')",
             "tickpropView.setRaster('x:1')", "tickpropView.setRaster('d:2')",
             "tickpropView.setNeurons('0-2')"]
    for mode in [""] + modes:
        if mode:
            browser.execute_script(mode)
        browser.execute_script("tickpropView.setFrame(12)")
        scroll, inner, right = fits(browser)
        assert scroll <= inner and right <= inner, (key, size, mode, scroll, inner, right)
        texts = browser.execute_script("return tickpropView.layout().texts")
        shown = {t["text"] for t in texts}
        assert {"x at cursor", "δ at cursor"} <= shown, (mode, shown)
        assert overlaps(texts) == [], (key, size, mode)
        assert not any("_id_" in t["text"] for t in texts), mode
    assert errors(browser.get_log("browser")) == []


def hover_cell(drv, frame, row):
    canvas = drv.find_element(By.ID, "canvas")
    rect = drv.execute_script("return arguments[0].getBoundingClientRect()", canvas)
    box = drv.execute_script("return tickpropView.cellBox(arguments[0], arguments[1])",
                             frame, row)
    ActionChains(drv).move_to_element_with_offset(
        canvas, int(box["x"] + box["w"] / 2 - rect["width"] / 2),
        int(box["y"] + box["h"] / 2 - rect["height"] / 2)).perform()
    return drv.find_element(By.ID, "hover")


def test_hover_box_hides_when_the_mode_changes(browser, pages):
    viewport(browser, 1280, 720)
    open_page(browser, pages["levelled"][0])
    hover = hover_cell(browser, 8, 3)
    assert hover.is_displayed() and "h1 +1 tick (2)" in hover.text, hover.text
    for control, value in (("colour", "tag"), ("rastermode", "x:1"), ("rastermode", "layers"),
                           ("curve", "mismatch_rel")):
        hover = hover_cell(browser, 8, 3)
        assert hover.is_displayed()
        Select(browser.find_element(By.ID, control)).select_by_value(value)
        assert not hover.is_displayed(), (control, value, hover.text)
    hover = hover_cell(browser, 8, 3)
    assert hover.is_displayed()
    browser.find_element(By.ID, "neurons").send_keys(Keys.CONTROL + "a" + Keys.NULL + "0-3"
                                                     + Keys.ENTER)
    assert not hover.is_displayed()
    assert errors(browser.get_log("browser")) == []


def test_tag_colouring_gives_each_frame_its_shade(browser, pages):
    """conv_digits holds each digit 8 ticks: the input row changes shade with the frame,
    and every cell is coloured as the tag PNG colours it."""
    viewport(browser, 1920, 1080)
    page, trace = pages["conv"]
    open_page(browser, page)
    Select(browser.find_element(By.ID, "colour")).select_by_value("tag")
    browser.execute_script("tickpropView.setFrame(0)")
    image = canvas_image(browser)
    rows = [c for c in readout(browser)["columns"]]
    png = png_colours(trace, "tag").astype(int)
    frames = trace["stream_frame"]
    seen = {}
    for t in range(1, len(frames)):
        for i, column in enumerate(rows):
            box = browser.execute_script("return tickpropView.cellBox(arguments[0], "
                                         "arguments[1])", t, i)
            got = image[int(box["y"] + 2), int(box["x"] + box["w"] / 2)]
            assert np.abs(got - png[t, column]).max() <= 2, (t, column, got, png[t, column])
            if column == 0:
                seen.setdefault(int(frames[t]), set()).add(tuple(got))
    assert len(seen) >= 4 and all(len(v) == 1 for v in seen.values()), seen
    shades = [seen[f].pop() for f in sorted(seen)]
    assert all(a != b for a, b in zip(shades, shades[1:])), shades


def cursor_x(drv):
    """The x of the cursor line in the mismatch panel: the columns of the panel where
    most pixels have the cursor's colour."""
    image = canvas_image(drv)
    panel = drv.execute_script("return tickpropView.layout().mismatch")
    colour = np.array(drv.execute_script("return tickpropView.payload.palette.rgb.cursor"))
    y0, y1 = int(panel["y"]) + 2, int(panel["y"] + panel["h"]) - 2
    x0, x1 = int(panel["x"]), int(panel["x"] + panel["w"])
    dark = (np.abs(image[y0:y1, x0:x1] - colour).sum(axis=-1) <= 30).mean(axis=0) > 0.9
    columns = np.flatnonzero(dark)
    assert len(columns) and columns.max() - columns.min() <= 3, columns
    return x0 + columns.mean()


def test_mismatch_panel_cursor_moves_with_the_scrubber(browser, pages):
    viewport(browser, 1280, 720)
    page, trace = pages["fig1"]
    open_page(browser, page)
    slider = browser.find_element(By.ID, "slider")
    seen = []
    for k in (3, 17, 29):
        browser.execute_script("arguments[0].value = arguments[1];"
                               "arguments[0].dispatchEvent(new Event('input'))", slider, k)
        box = browser.execute_script("return tickpropView.cellBox(arguments[0], 0)", k)
        x = cursor_x(browser)
        assert abs(x - (box["x"] + box["w"] / 2)) <= 1.5, (k, x, box)
        seen.append(x)
    assert seen[0] < seen[1] < seen[2]
    # hovering the panel names each layer's value at that tick, as trace.npz holds it
    canvas = browser.find_element(By.ID, "canvas")
    rect = browser.execute_script("return arguments[0].getBoundingClientRect()", canvas)
    panel = browser.execute_script("return tickpropView.layout().mismatch")
    box = browser.execute_script("return tickpropView.cellBox(20, 0)")
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(box["x"] + box["w"] / 2 - rect["width"] / 2),
        int(panel["y"] + panel["h"] / 2 - rect["height"] / 2)).perform()
    text = browser.find_element(By.ID, "hover").text.split("\n")
    assert text[0] == "tick 20 · cos(g, backprop)", text
    got = {line.split(" = ")[0]: float(line.split(" = ")[1]) for line in text[1:]}
    assert got == {f"layer {l}": pytest.approx(trace["mismatch_cos"][20, l - 1], rel=1e-5,
                                               abs=1e-9) for l in range(1, 10)}
    ActionChains(browser).click().perform()        # a click there moves the cursor to tick 20
    assert readout(browser)["tick"] == 20
    assert abs(cursor_x(browser) - (box["x"] + box["w"] / 2)) <= 1.5
    assert errors(browser.get_log("browser")) == []
