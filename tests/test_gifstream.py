"""The streaming GIF writer (simulator.render.gifstream), checked against
independent readers: Pillow's GIF decoder (indices and colours of every
frame), a block walker written here from the GIF89a spec (header, loop, delay,
frame rectangles), Pillow's own all-frames writer (the pictures tickprop wrote
before, pixel for pixel, and their size) and tracemalloc (memory)."""
import io
import os
import tracemalloc

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from simulator.errors import SimulatorError
from simulator.render import gifstream, levels
from simulator.render.animate import NeuronStates, render_frames
from simulator.render.indexed import gif_duration
from simulator.runner import simulate_scene

H, W = 40, 64


@pytest.fixture
def p_frames(monkeypatch):
    """Decode a GIF's frames as Pillow composes them, kept as palette indices."""
    monkeypatch.setattr(GifImagePlugin, "LOADING_STRATEGY",
                        GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY)

    def decode(data):
        im = Image.open(io.BytesIO(data))
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            assert im.mode == "P"
            out.append(np.array(im))
        return np.array(out)
    return decode


def walk(data):
    """The GIF's blocks per the GIF89a spec: {'size', 'table' (entries),
    'loop', 'frames': [{'delay' (1/100 s), 'disposal', 'transparent' (index
    or None), 'box' (left, top, width, height)}]}."""
    assert data[:6] == b"GIF89a" and data[-1:] == b";"
    u16 = lambda at: int.from_bytes(data[at:at + 2], "little")   # noqa: E731
    flags = data[10]
    out = {"size": (u16(6), u16(8)), "table": 2 ** ((flags & 7) + 1) if flags & 0x80 else 0,
           "loop": None, "frames": []}
    pos, control = 13 + 3 * out["table"], None
    while data[pos] != 0x3B:
        if data[pos] == 0x21:
            label, block = data[pos + 1], pos + 2
            if label == 0xF9:
                packed = data[block + 1]
                control = {"delay": u16(block + 2), "disposal": (packed >> 2) & 7,
                           "transparent": data[block + 4] if packed & 1 else None}
            elif label == 0xFF and data[block + 1:block + 12] == b"NETSCAPE2.0":
                out["loop"] = u16(block + 14)
            pos = block
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        else:
            assert data[pos] == 0x2C
            assert data[pos + 9] & 0x80 == 0                       # no local colour table
            out["frames"].append({**control, "box": tuple(u16(pos + k) for k in (1, 3, 5, 7))})
            pos += 11                                            # descriptor + LZW code size
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
            control = None
    return out


def palette_of(count, rng):
    """``count`` distinct colours, so a colour names its index."""
    keys = rng.choice(2 ** 24, size=count, replace=False)
    return np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)


def moving_frames(n, rng, colours=254, h=H, w=W):
    """Frames with a few small random patches changing, one repeated frame
    and one that changes only the bottom-right pixel."""
    frames = np.empty((n, h, w), dtype=np.uint8)
    frames[0] = rng.integers(0, colours, (h, w))
    for i in range(1, n):
        frames[i] = frames[i - 1]
        if i == 3:
            continue                                              # a repeat
        if i == 5:
            frames[i, -1, -1] = (int(frames[i, -1, -1]) + 1) % colours
            continue
        r, c = rng.integers(0, h - 6), rng.integers(0, w - 9)
        frames[i, r:r + 6, c:c + 9] = rng.integers(0, colours, (6, 9))
    return frames


def distinct(frames):
    """The frames a GIF stores: each one that differs from the one before."""
    keep = [0] + [i for i in range(1, len(frames)) if (frames[i] != frames[i - 1]).any()]
    return frames[keep], keep


def encode(frames, colours, duration=50.0, loop=0):
    buf = io.BytesIO()
    count = gifstream.stream_gif(buf, iter(frames), colours, duration, loop)
    assert count == len(frames)
    return buf.getvalue()


# ------------------------------------------------------------ what is decoded
@pytest.mark.parametrize("count", [254, 256, 7])
def test_decoded_frames_are_the_frames_given(count, rng, p_frames):
    colours = palette_of(count, rng)
    frames = moving_frames(12, rng, colours=count)
    data = encode(frames, colours)
    kept, _ = distinct(frames)
    assert np.array_equal(p_frames(data), kept)                   # exact indices
    rgb = iio.imread(data, index=None, extension=".gif")[..., :3]
    assert np.array_equal(rgb, colours[kept])                     # exact colours


def test_loop_delay_and_palette_fields(rng):
    colours = palette_of(254, rng)
    frames = moving_frames(8, rng)
    info = walk(encode(frames, colours, duration=50.0))
    assert info["size"] == (W, H) and info["table"] == 256 and info["loop"] == 0
    # 50 ms a frame; frame 3 repeats frame 2, which is shown 100 ms instead.
    assert [f["delay"] for f in info["frames"]] == [5, 5, 10, 5, 5, 5, 5]
    assert all(f["disposal"] == 1 for f in info["frames"])        # leave in place
    assert info["frames"][0]["transparent"] is None
    assert all(f["transparent"] == 254 for f in info["frames"][1:])
    # 1000/30 ms is 3.33 hundredths: stored as 3 (rounded down, as Pillow does).
    info = walk(encode(frames[:2], colours, duration=1000 / 30, loop=3))
    assert info["loop"] == 3 and [f["delay"] for f in info["frames"]] == [3, 3]


def test_frames_store_only_the_changed_rectangle(rng, p_frames):
    colours = palette_of(254, rng)
    frames = moving_frames(10, rng)
    data = encode(frames, colours)
    kept, _ = distinct(frames)
    boxes = [f["box"] for f in walk(data)["frames"]]
    assert boxes[0] == (0, 0, W, H)
    for k in range(1, len(kept)):
        rows, cols = np.nonzero(kept[k] != kept[k - 1])
        assert boxes[k] == (cols.min(), rows.min(), cols.max() - cols.min() + 1,
                            rows.max() - rows.min() + 1)
    assert boxes[4] == (W - 1, H - 1, 1, 1)       # frame 5 (4th stored) changes one pixel
    assert np.array_equal(p_frames(data), kept)                   # and decode whole


def test_wave_gif_is_pixel_for_pixel_the_gif_pillow_wrote(tmp_path):
    """The waves.gif frames, written by Pillow's all-frames writer as tickprop
    did before (optimize=True, the palette as 'L' frames) and by the stream,
    decode to the same pictures; the file sizes stay within 10 %."""
    trace = simulate_scene("fig3_fast", "run.ticks=40")
    frames, colours = render_frames(trace)
    frames = np.array(list(frames))
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(colours)] = colours
    table[len(colours):, 2] = 7                                   # unique fillers
    table[len(colours):, 0] = np.arange(256 - len(colours))
    iio.imwrite(tmp_path / "pillow.gif", frames, extension=".gif", mode="L",
                palette=table.tobytes(), duration=50.0, loop=0, optimize=True)
    with open(tmp_path / "stream.gif", "wb") as f:
        assert gifstream.stream_gif(f, iter(frames), colours, gif_duration()) == len(frames)
    old = iio.imread(tmp_path / "pillow.gif", index=None)[..., :3]
    new = iio.imread(tmp_path / "stream.gif", index=None)[..., :3]
    assert np.array_equal(old, new)
    assert np.array_equal(new, colours[frames])
    ratio = os.path.getsize(tmp_path / "stream.gif") / os.path.getsize(tmp_path / "pillow.gif")
    assert 0.9 <= ratio <= 1.1, ratio


def test_level_wave_gif_frames_are_the_animators_frames(tmp_path, rng):
    values = np.abs(rng.standard_normal((50, 4))) * 10.0 ** -np.arange(50)[:, None]
    path = levels.write_wave_gif(tmp_path / "w.gif", values, title="wave")
    anim = levels.LevelAnimator(values, levels.DEFAULT_SIZE, "wave", "level", None, "tick")
    want = np.array([anim.render(t) for t in anim.frame_ticks()])
    assert np.array_equal(iio.imread(path, index=None)[..., :3], distinct(want)[0])


# ------------------------------------------------------------------- memory
def test_memory_stays_one_frame_while_writing_300_frames(tmp_path):
    h, w, n = 400, 720, 300
    colours = palette_of(254, np.random.default_rng(1))
    base = np.random.default_rng(2).integers(0, 254, (h, w)).astype(np.uint8)

    def frames():
        for i in range(n):                        # a cursor sweeping a fixed picture
            frame = base.copy()
            frame[:, 2 * i:2 * i + 2] = 253
            yield frame
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with open(tmp_path / "long.gif", "wb") as f:
            assert gifstream.stream_gif(f, frames(), colours, gif_duration()) == n
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * h * w, peak / (h * w)                      # ≪ n frames' bytes
    assert len(walk((tmp_path / "long.gif").read_bytes())["frames"]) == n


def test_wave_frames_are_drawn_as_they_are_written(tmp_path):
    trace = simulate_scene("fig3_fast", "run.ticks=200")
    frames, colours = render_frames(trace)                        # drawn on demand
    pixels = 720 * 400
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert gifstream.write_gif(tmp_path / "w.gif", frames, colours, 50.0) == 200
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * pixels, peak / pixels                      # all 200 frames: 200 x


def test_neuron_states_are_read_without_copying_the_recorded_states():
    """The wave GIF's neuron panel reads a long run's states (the largest
    recorded arrays) in place: |x| and |δ| for a frame's own row, the colour
    scale one layer at a time; its 95th percentiles are those of all |x|
    (|δ|) of a layer, computed here with numpy directly."""
    trace = simulate_scene("fig3_fast", "run.ticks=2000")
    x, d = (trace[k][:, :, 0, :16] for k in ("state_x", "state_delta"))
    tracemalloc.start()
    try:
        states = NeuronStates(trace)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * (x.nbytes + d.nbytes), peak / (x.nbytes + d.nbytes)
    for got, a in ((states.xs, x), (states.ds, d)):
        for j in range(a.shape[1]):
            v = np.abs(a[:, j])
            v = v[np.isfinite(v) & (v > 0)]
            assert got[j] == (np.percentile(v, 95) if v.size else 0.0)


# ------------------------------------------------------------------- atomic
def test_a_failure_mid_stream_leaves_no_file(tmp_path, rng):
    colours = palette_of(254, rng)
    path = tmp_path / "w.gif"

    def frames():
        yield from moving_frames(4, rng)
        raise RuntimeError("drawing failed")
    with pytest.raises(RuntimeError):
        gifstream.write_gif(path, frames(), colours, 50.0)
    assert os.listdir(tmp_path) == []
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        gifstream.write_gif(path, frames(), colours, 50.0)
    assert os.listdir(tmp_path) == ["w.gif"] and path.read_bytes() == b"old"


def test_bad_frames_are_refused(rng):
    colours = palette_of(10, rng)
    for bad in ([np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8)],    # size changes
                [np.full((4, 5), 10, np.uint8)],                             # past the palette
                [np.zeros((4, 5), np.int64)],                                # not uint8
                []):                                                         # nothing
        with pytest.raises(SimulatorError):
            gifstream.stream_gif(io.BytesIO(), bad, colours, 50.0)
    with pytest.raises(SimulatorError):
        gifstream.stream_gif(io.BytesIO(), [], np.zeros((257, 3), np.uint8), 50.0)
