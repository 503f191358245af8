"""The GIFs teach what the paper says (issue 11, item 2), checked on their pixels.

waves.gif: above column l the two frames g[l] = δ[l] x[l−1]ᵀ pairs are written
(red: the frame of the x it takes from below, blue: the frame of δ[l]'s target)
and boxed in amber where they agree. Expectations come from the tick rule of
Betti & Gori (with a new frame every tick, x[t, l−1] carries frame t − (l − 1)
and δ[t, l]'s target frame t − (L − l), equal exactly at ls = (L+1)/2) and from
the engine's own pair and supervision tags, never from the renderer; the digits
are read back from the frame by matching them against text that a separate
matplotlib figure renders. A colour key explains the neuron grid; fonts grow
with --size. The relaxation and PC wave GIFs carry text (title, axes) and a
colour bar, and their PNGs a colour bar whose scale spans the record.
"""
import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from colours import classify
from simulator.analysis import palette
from simulator.render import levels
from simulator.render.animate import WaveAnimator, write_gif
from simulator.runner import simulate_scene

COVER = 0.3        # ink coverage that counts as a pixel of a character
AMBER = np.array([int(palette.LS_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])


@pytest.fixture(scope="module")
def fig3():
    return simulate_scene("fig3_fast", "run.ticks=30")


@pytest.fixture(scope="module")
def residual():
    """The unlevelled residual graph with a new frame every tick."""
    return simulate_scene("residual_levelling", "run.ticks=16", "stream.kind=held",
                          "stream.hold=1")


# ------------------------------------------------------------------ helpers
def ink(region, colour):
    """Boolean mask of the pixels of ``region`` covered more than COVER by 'red'
    or 'blue' text (amber, whose green is far above its blue, is no red ink)."""
    r, g, b = (region[..., i].astype(float) for i in range(3))
    if colour == "red":        # red ink lowers green most: coverage from green
        return ((255 - g) / (255 - 255 * palette.RED[1]) > COVER) & (np.abs(g - b) < 40)
    return ((255 - r) / (255 - 255 * palette.BLUE[0]) > COVER) & (b > r + 40)


def crop(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return mask[:0, :0]
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def rendered(text, fontsize, dpi):
    """The ink of ``text`` as an independent Agg figure draws it, at four
    sub-pixel offsets (text of the GIF may sit anywhere between pixels)."""
    out = []
    for dx in (0.0, 0.25, 0.5, 0.75):
        for dy in (0.0, 0.25, 0.5, 0.75):
            fig = Figure(figsize=(1.0, 1.0), dpi=dpi)
            canvas = FigureCanvasAgg(fig)
            fig.text((20 + dx) / dpi, (30 + dy) / dpi, text, fontsize=fontsize, color="black")
            canvas.draw()
            out.append(crop(np.asarray(canvas.buffer_rgba())[..., 0] < 255 * (1 - COVER)))
    return out


def similarity(a, b):
    """Overlap of two ink masks, placed top-left (0 if their sizes differ much)."""
    if abs(a.shape[0] - b.shape[0]) > 1 or abs(a.shape[1] - b.shape[1]) > 2:
        return 0.0
    h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    pa, pb = np.zeros((h, w), bool), np.zeros((h, w), bool)
    pa[:a.shape[0], :a.shape[1]], pb[:b.shape[0], :b.shape[1]] = a, b
    return (pa & pb).sum() / max((pa | pb).sum(), 1)


def digits(mask):
    """The ink of each character of ``mask``, split at blank pixel columns."""
    cols = mask.any(axis=0)
    out, start = [], None
    for x, on in enumerate(list(cols) + [False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            out.append(crop(mask[:, start:x]))
            start = None
    return out


def read_number(region, colour, fontsize, dpi):
    """The number written in ``colour`` in ``region``, read digit by digit
    against digits that an independent matplotlib figure renders."""
    templates = {d: rendered(str(d), fontsize, dpi) for d in range(10)}
    text = ""
    for seen in digits(ink(region, colour)):
        scores = {d: max(similarity(seen, m) for m in ms) for d, ms in templates.items()}
        best = max(scores, key=scores.get)
        assert scores[best] > 0.6, scores
        text += str(best)
    return int(text) if text else None


def amber_box(frame, box):
    """True when the edges of the pixel ``box`` are drawn in amber."""
    top, bottom, left, right = box
    edges = [frame[top, left + 2:right - 2], frame[bottom - 1, left + 2:right - 2],
             frame[top + 2:bottom - 2, left], frame[top + 2:bottom - 2, right - 1]]
    return all((np.abs(e.astype(int) - AMBER).sum(axis=-1) < 80).mean() > 0.8 for e in edges)


def gif(path):
    return iio.imread(path, index=None)[..., :3]


# ------------------------------------------------------------ waves.gif: ls
def test_the_ls_column_shows_the_frames_g_pairs_and_they_agree(fig3, tmp_path):
    """fig3 (a new frame every tick): above ls the GIF writes x[ls−1]'s frame and
    δ[ls]'s target frame, both t − (ls − 1) = t − (L − ls), boxed as equal; on
    main it wrote x[ls]'s own frame, one apart (tick 30: 25 vs 26)."""
    L = fig3.depth
    ls = (L + 1) // 2
    write_gif(tmp_path / "waves.gif", fig3, every=1)
    frames = gif(tmp_path / "waves.gif")
    anim = WaveAnimator(fig3)
    size = anim.glyphs.px * 72.0 / anim.dpi
    for t in (2 * L, 2 * L + 5, len(fig3["tick"]) - 1):      # both waves there
        want = t - (ls - 1)
        assert want == t - (L - ls)
        # The engine agrees with the tick rule.
        assert fig3["tag_pair"][t, ls] == want == fig3["tag_supervision"][t, ls]
        top, bottom, left, right = anim.tag_box(ls)
        middle = (top + bottom) // 2
        frame = frames[t]
        x_seen = read_number(frame[middle:bottom, left:right], "red", size, anim.dpi)
        d_seen = read_number(frame[top:middle, left:right], "blue", size, anim.dpi)
        assert (x_seen, d_seen) == (want, want), t
        assert amber_box(frame, (top, bottom, left, right)), t
        # One layer up the pair is two frames apart, and not boxed.
        top, bottom, left, right = anim.tag_box(ls + 1)
        middle = (top + bottom) // 2
        x_seen = read_number(frame[middle:bottom, left:right], "red", size, anim.dpi)
        d_seen = read_number(frame[top:middle, left:right], "blue", size, anim.dpi)
        assert (x_seen, d_seen) == (t - ls, t - (L - ls - 1)), t
        assert not amber_box(frame, (top, bottom, left, right)), t


def test_only_columns_whose_paired_frames_agree_are_boxed(fig3, residual, tmp_path):
    """Boxed exactly where the engine's pair tag (the x g takes) and supervision
    tag (δ's target) name the same stream frame: only ls in fig3, only the
    synchronization set on the residual graph (one column per vertex by level)."""
    for name, trace in (("fig3", fig3), ("residual", residual)):
        write_gif(tmp_path / f"{name}.gif", trace, every=1)
        frames = gif(tmp_path / f"{name}.gif")
        anim = WaveAnimator(trace)
        frame_of = trace["stream_frame"]
        T, n = trace["tag_pair"].shape
        t = T - 1
        boxed = []
        for v in range(1, n):
            box = anim.tag_box(v)
            if box is None:
                continue
            pair, sup = trace["tag_pair"][t, v], trace["tag_supervision"][t, v]
            same = pair >= 0 and sup >= 0 and frame_of[pair] == frame_of[sup]
            assert amber_box(frames[t], box) == same, (name, v)
            boxed += [v] if same else []
        if name == "fig3":
            assert boxed == [(trace.depth + 1) // 2]
        else:
            assert boxed == list(np.flatnonzero(trace["vertex_sync"]))


# ------------------------------------------------------ colour key and fonts
def test_the_neuron_grid_has_a_colour_key(fig3):
    """Three ramps, red |x|, blue |δ|, purple both, each from light to the full
    shade (many shades, lightness falling left to right), labelled."""
    anim = WaveAnimator(fig3)
    frame = anim.render(10)
    key = anim.key_ax
    labels = [t.get_text() for t in key.get_yticklabels()]
    assert labels == ["|x|", "|δ|", "both"]
    x0, y0 = key.transAxes.transform((0.08, 0.0))
    x1, y1 = key.transAxes.transform((0.99, 1.0))
    H = anim.height
    for row, colour in enumerate(("red", "blue", "purple")):
        y = int(H - (y1 - (row + 0.5) * (y1 - y0) / 3))
        line = frame[y, int(x0):int(x1)].astype(int)
        assert {classify(p) for p in line} == {colour}, colour
        lightness = line.sum(axis=1)
        assert len(np.unique(lightness)) >= 6 and lightness[0] > lightness[-1] + 150, colour


def title_height(frame):
    """Ink height in pixels of the dark title text in the top band, left half."""
    band = frame[: frame.shape[0] // 10, : frame.shape[1] // 2].astype(int)
    dark = band.max(axis=-1) < 110
    rows = np.flatnonzero(dark.any(axis=1))
    return rows[-1] - rows[0] + 1


def test_fonts_scale_with_the_size_and_every_text_fits(fig3):
    """Twice the size, twice the text; at the default size every text is at
    least 8 pt and all text stays inside the canvas at both sizes (1280x720
    clipped the ls label on main)."""
    small = WaveAnimator(fig3, size=(720, 400))
    large = WaveAnimator(fig3, size=(1440, 800))
    ratio = title_height(large.render(20)) / title_height(small.render(20))
    assert 1.6 < ratio < 2.5, ratio
    for size in ((720, 400), (1280, 720)):
        anim = WaveAnimator(fig3, size=size)
        fig = anim.fig
        renderer = anim.canvas.get_renderer()
        for text in fig.findobj(Text):
            if not text.get_visible() or not text.get_text().strip():
                continue
            if size == (720, 400):
                assert text.get_fontsize() >= 8, text.get_text()
            ext = text.get_window_extent(renderer)
            assert ext.x0 >= -1 and ext.y0 >= -1 and ext.x1 <= size[0] + 1 \
                and ext.y1 <= size[1] + 1, (size, text.get_text())
    # The tags drawn per frame are at least 8 pt too.
    assert small.glyphs.px * 72.0 / small.dpi >= 8


# ------------------------------------------------- relaxation and PC waves
def front(ticks=14, n=6):
    """A wave that reaches level k at tick k and then decays (the Z-IL picture)."""
    v = np.zeros((ticks, n))
    for k in range(n):
        v[k:, k] = 10.0 ** -(0.3 * np.arange(ticks - k))
    return v


def gradient_column(image, min_rows=80):
    """True when some pixel column holds a colour bar: blue, growing lighter
    from top to bottom over at least ``min_rows`` rows with many shades."""
    img = image[..., :3].astype(int)
    for x in range(img.shape[1] // 2, img.shape[1]):
        col = img[:, x]
        blue = np.array([classify(p) == "blue" for p in col])
        rows = np.flatnonzero(blue)
        if len(rows) < min_rows:
            continue
        run = col[rows[0] + 2:rows[-1] - 1]            # inside the bar's outline
        if not blue[rows[0]:rows[-1] + 1].all():
            continue
        light = run.sum(axis=1)
        if np.all(np.diff(light) >= -3) and len(np.unique(light)) > 20:
            return True
    return False


def test_wave_pngs_have_a_colour_bar(tmp_path):
    """A uniform record draws one shade in the raster: a column of many shades
    growing lighter downwards can only be the colour bar."""
    v = np.full((20, 5), 3.0)
    v[:, 0] = 0.0
    path = levels.write_wave_png(tmp_path / "w.png", v, "uniform", "level")
    assert gradient_column(iio.imread(path))


def test_the_shading_spans_the_record_so_a_decay_shows():
    """relaxation_wave.png was almost uniform: a record decaying over three
    decades now runs from the strongest shade to the weakest present one."""
    v = 10.0 ** -np.linspace(0.0, 3.0, 50)[:, None] * np.ones((1, 3))
    lv = levels.wave_levels(v)
    assert lv.max() == 1.0 and lv.min() == pytest.approx(palette.FLOOR)


def test_wave_gifs_are_labelled(tmp_path):
    """Every frame has a title (dark text across the top band where the raster
    and bars never reach), a level axis label left of the raster, a colour bar,
    and a tick label that changes from frame to frame."""
    v = front()
    path = levels.write_wave_gif(tmp_path / "w.gif", v, title="Z-IL error wave per level",
                                 level_label="level", tick_label="inference tick")
    frames = gif(path)
    assert len(frames) == len(v)
    H, W = frames.shape[1:3]
    for frame in frames[::5]:
        top = frame[: H // 12].astype(int)
        dark = (top.max(axis=-1) < 120) & (np.ptp(top, axis=-1) < 40)
        assert len(np.flatnonzero(dark.any(axis=0))) > 60           # text, not a cursor line
        left = frame[:, : W // 8].astype(int)
        assert ((left.max(axis=-1) < 150).any(axis=1)).sum() > 20   # axis label, level names
        assert gradient_column(frame)
    # Above the raster (where the bars never reach) the tick label changes.
    top = levels.LevelAnimator(v, title="Z-IL error wave per level").box[0]
    assert (frames[3, H // 12:top] != frames[9, H // 12:top]).any()
    assert (frames[3, H // 12:top] == frames[4, H // 12:top]).mean() > 0.9
