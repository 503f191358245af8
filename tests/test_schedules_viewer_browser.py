"""A schedules run's view.html in headless Chromium (the harness of
test_viewer_browser.py): every schedule's view fits the window with no two drawn
texts overlapping, and the readout, the hover box and the canvas pixels say
what the hand-written timetable of tests/schedules_synthetic.py says: frame s
forward at stage v at tick s + fwd(v), backward at s + D + S(v) (pipelined);
the shipped schedules_zoo scene, run short through the CLI, shows its saved
timetables with the levelled net's identity stages named as delays."""
import numpy as np
import pytest

from test_schedules_view import pipelined_bits, schedules_run
from test_view import run_and_view
from test_viewer_browser import browser, canvas_image, errors, open_page, readout  # noqa: F401
from test_viewer_layout import fits, hover_cell, overlaps, viewport
from schedules_synthetic import NAMES
from simulator.view import write_view

LEVELS, AFTER, DEPTH, FRAMES = np.arange(1, 5), 3 - np.arange(4), 4, 16


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "run"
    schedules_run(folder)
    return write_view(folder)


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_schedule_view_fits_and_no_texts_overlap(browser, page, size):
    viewport(browser, *size)
    assert errors(open_page(browser, page)) == []
    options = browser.execute_script(
        "return Array.from(document.getElementById('view').options).map(o => o.text)")
    assert options == list(NAMES)
    for k, name in enumerate(NAMES):
        for colour in ("work", "tag"):
            browser.execute_script(f"tickpropView.setView({k});"
                                   f"tickpropView.setColour('{colour}');"
                                   "tickpropView.setFrame(12)")
            scroll, inner, right = fits(browser)
            assert scroll <= inner and right <= inner, (name, size, scroll, inner, right)
            texts = browser.execute_script("return tickpropView.layout().texts")
            assert overlaps(texts) == [], (name, colour, size)
            shown = {t["text"] for t in texts}
            assert {"a forward op", "a backward op", "the stage's weights update",
                    "weight versions held at cursor"} <= shown, shown
            assert readout(browser)["view"] == name
    assert errors(browser.get_log("browser")) == []


def test_readout_and_pixels_follow_the_timetable(browser, page):
    viewport(browser, 1920, 1080)
    open_page(browser, page)
    k = NAMES.index("1f1b")
    browser.execute_script(f"tickpropView.setView({k}); tickpropView.setColour('work');"
                           "tickpropView.setFrame(60)")                 # cursor off the cells
    T = 2 * DEPTH * FRAMES
    bits = pipelined_bits(T, LEVELS, AFTER, DEPTH, FRAMES, FRAMES + 2 * DEPTH)
    image = canvas_image(browser)
    for t in range(0, 26):
        for r in range(4):
            box = browser.execute_script("return tickpropView.cellBox(arguments[0], "
                                         "arguments[1])", t, r)
            red, green, blue = image[int(box["y"] + box["h"] / 4), int(box["x"] + box["w"] / 2)]
            cell = bits[t, r] & 3
            assert (red > blue + 60) == (cell == 1), (t, r, (red, green, blue))
            assert (blue > red + 60) == (cell == 2), (t, r, (red, green, blue))
            assert (min(red, blue) > green + 15) == (cell == 3), (t, r, (red, green, blue))
    for t in (3, 9, 20):
        browser.execute_script(f"tickpropView.setFrame({t})")
        got = readout(browser)
        assert got["tick"] == t and got["rows"] == ["h1", "h2", "h3", "out"]
        fwd = [t - lv if 0 <= t - lv < FRAMES else -1 for lv in LEVELS]
        bwd = [t - DEPTH - a if 0 <= t - DEPTH - a < FRAMES else -1 for a in AFTER]
        assert got["tags"] == {"forward": fwd, "backward": bwd}
        assert got["wave"] == bits[t].tolist()
        stashed = [sum(1 for f in range(FRAMES) if t - DEPTH - a < f <= t - lv)
                   for lv, a in zip(LEVELS, AFTER)]     # forward done, backward not yet
        assert got["fields"]["versions"] == [1.0 + n for n in stashed]


def test_hover_names_the_stage_the_frames_and_the_update(browser, page):
    viewport(browser, 1920, 1080)
    open_page(browser, page)
    browser.execute_script(f"tickpropView.setView({NAMES.index('1f1b')})")
    text = hover_cell(browser, 10, 0).text          # h1: frame 9 forward, frame 3 backward
    assert text.startswith("tick 10 · stage h1 (1)"), text
    assert "frame worked on forward: 9" in text and "frame worked on backward: 3" in text
    assert "forward and backward" in text and "the stage's weights update" in text
    assert "delay [ticks]: weights read → this update = 6" in text       # 2·S(h1) = 6
    text = hover_cell(browser, 1, 0).text
    assert "forward only" in text and "weights update" not in text
    assert errors(browser.get_log("browser")) == []


def test_the_shipped_scene_run_through_the_cli_views_cleanly(browser, tmp_path):
    page = run_and_view(tmp_path / "run", "schedules_zoo", "--set", "schedules.frames=8",
                        "--set", "schedules.seeds=[0]", "--set", "schedules.eval_size=20",
                        "--set", "schedules.eval_every=16")
    viewport(browser, 1280, 720)
    assert errors(open_page(browser, page)) == []
    saved = np.load(tmp_path / "run" / "schedules.npz")
    for k, name in enumerate(saved["names"]):
        browser.execute_script(f"tickpropView.setView({k}); tickpropView.setFrame(9)")
        got = readout(browser)
        order = np.lexsort((np.arange(len(saved["levels"])), saved["levels"]))
        assert got["rows"] == saved["vertices"][order].tolist()
        forward = saved[f"{name}__forward"]
        assert got["tags"]["forward"] == forward[9, order].tolist()
        texts = browser.execute_script("return tickpropView.layout().texts")
        assert overlaps(texts) == [], name
        assert any(t["text"].startswith("+1 tick before r") for t in texts)
    assert fits(browser)[0] <= fits(browser)[1]
    assert errors(browser.get_log("browser")) == []
