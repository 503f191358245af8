"""The wave GIF: a frame per tick (or every k) of the neurons (red |x|, blue |δ|),
over column l the frames g[l] = δ[l] x[l−1]ᵀ pairs (amber box: the same), ls in
amber, mismatch bars and a cursor over the raster, painted over a static figure.
"""
import numpy as np
from matplotlib.patches import Patch

from . import gifstream
from ..analysis import palette
from .indexed import (CURSOR, DEFAULT_FPS, DEFAULT_SIZE, FONT, GRAY_BAR, MAX_FRAMES,
                      NOT_A_NEURON, IndexedFigure, frame_limit, frame_step, gif_duration,
                      glyphs_for)
from .raster import (draw_panel, layer_scales, panel_image, presence, row_ticks, step_note,
                     style_names)
from .rows import picture_rows

MAX_NEURONS = 32        # neurons drawn per layer column


def frame_ticks(trace, every=1, max_frames=MAX_FRAMES):
    """Rows that become GIF frames: 0, k, 2k, … with k ≥ ``every``, at most ``max_frames``."""
    T = len(trace["tick"])
    return np.arange(0, T, frame_step(T, every, max_frames))


class NeuronStates:
    """The network panel's colours: sample 0's states, or per-layer norms without."""

    def __init__(self, trace):
        self.trace = trace
        self.depth = trace.depth
        self.fwd, self.bwd = presence(trace)
        self.has_states = "state_x" in trace and len(trace["state_tick"]) > 0
        if self.has_states:
            self.state_tick = np.asarray(trace["state_tick"])
            self.layers = np.asarray(trace["state_layers"])
            self.rows = int(min(MAX_NEURONS, np.max(trace["sizes"])))
            self.x = trace["state_x"][:, :, 0, :self.rows]
            self.d = trace["state_delta"][:, :, 0, :self.rows]
            self.xs, self.ds = _layer_scale(self.x), _layer_scale(self.d)
        else:
            self.rows, self.layers = 1, np.arange(self.depth + 1)
            self.xs, self.ds = layer_scales(trace)

    def rgb(self, t):
        """RGB floats (rows, L+1, 3) for row t; unrecorded layers grey, no neuron white."""
        image = np.full((self.rows, self.depth + 1, 3), palette.EMPTY * 0.9)
        if self.has_states:
            s = max(0, int(np.searchsorted(self.state_tick, t, side="right")) - 1)
            x, d = np.abs(self.x[s]).T, np.abs(self.d[s]).T      # (rows, recorded layers)
        else:
            x = np.nan_to_num(self.trace["x_norm"][t])[None, :]
            d = np.nan_to_num(self.trace["delta_norm"][t])[None, :]
        fwd = np.broadcast_to(self.fwd[t, self.layers][None, :], x.shape)
        bwd = np.broadcast_to(self.bwd[t, self.layers][None, :], x.shape)
        colours = palette.mix(palette.magnitude_levels(x, fwd, self.xs[None, :]),
                              palette.magnitude_levels(d, bwd, self.ds[None, :]))
        colours[np.isnan(x)] = NOT_A_NEURON
        image[:, self.layers] = colours
        return image


def _layer_scale(a):
    """Per-layer 95th percentile of |a| > 0 for states ``a`` (rows, layers, neurons), so
    outliers saturate; a layer at a time, so a long run's states are never copied."""
    out = np.zeros(a.shape[1])
    for j in range(a.shape[1]):
        row = np.abs(a[:, j]).ravel()
        row = row[np.isfinite(row) & (row > 0)]
        out[j] = np.percentile(row, 95) if len(row) else 0.0
    return out


class WaveAnimator(IndexedFigure):
    """The GIF's static figure, drawn once; ``indices(t)`` / ``render(t)`` a frame."""

    def __init__(self, trace, size=DEFAULT_SIZE, color="magnitude"):
        self.trace = trace
        self.depth = trace.depth
        self.rows = picture_rows(trace)      # column p shows trace column rows.order[p]
        self.states = NeuronStates(trace)
        self.cos = trace["mismatch_cos"]
        # the stream frames (T, n) of the x and δ g[v] pairs (δ's where drawn), −1: none
        pair = np.array(trace["tag_pair"], copy=True)
        sup = np.where(self.states.bwd & (trace["tag_supervision"] >= 0),
                       trace["tag_supervision"], -1)
        pair[:, 0] = sup[:, 0] = -1
        self.tag_x, self.tag_d = trace.stream_frames_of(pair), trace.stream_frames_of(sup)
        self.name = trace.meta.get("name", "") if isinstance(trace.meta, dict) else ""
        self._build_figure(size, color)
        self._index_background()
        self.title_glyphs = glyphs_for(FONT + 2, self.dpi)
        self._pixel_maps()
        self.ink = {name: self.palette.index_float(c) for name, c in (
            ("bar", GRAY_BAR), ("cursor", CURSOR), ("amber", palette.from_hex(palette.LS_COLOUR)))}

    def _build_figure(self, size, color):
        fig = self._start(size)
        self.glyphs = glyphs_for(FONT - 0.5, self.dpi)          # the tags' font
        small, graph, L = FONT - 1, self.rows.graph, self.depth
        # A graph names its vertices: room under the bars and left of the raster.
        grid = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.25), height_ratios=(2.2, 1.0),
                                left=0.085, right=0.91, bottom=0.21 if graph else 0.12,
                                top=0.72, wspace=0.55 if graph else 0.3, hspace=0.3)
        net = self.net = fig.add_subplot(grid[0, 0])
        bars = self.bars_ax = fig.add_subplot(grid[1, 0])
        self.raster = fig.add_subplot(grid[:, 1])
        # Three-digit layer numbers need twice the room of short ones.
        layer_ticks = range(0, L + 1, max(1, int(np.ceil((L + 1) / (12 if L < 100 else 6)))))
        for ax in (net, bars):
            ax.set(xlim=(-0.5, L + 0.5), xticks=layer_ticks)
        net.set(ylim=(-0.5, self.states.rows - 0.5), yticks=[])
        net.tick_params(labelbottom=False, labelsize=small)
        if not self.states.has_states:
            label = "‖·‖ per layer"
        elif self.states.rows < int(np.max(self.trace["sizes"])):
            label = f"neurons (first {self.states.rows})"
        else:
            label = "neurons"
        net.set_ylabel(label, fontsize=small)
        # The two tag rows above the network: what column l shows of g[l]'s pairing.
        x_row, d_row = self._tag_baselines()
        x0 = net.get_position().x0
        for row, text, colour in ((x_row, "x[input]" if graph else "x[l−1]", palette.RED),
                                  (d_row, "δ[v]" if graph else "δ[l]", palette.BLUE)):
            fig.text(x0 - 0.005, 1.0 - row / self.height, text, ha="right", va="baseline",
                     fontsize=small, color=colour)
        fig.text(x0, 1.0 - (d_row - 1.45 * self.glyphs.px) / self.height,
                 "frames g pairs (amber box: the same frame)", ha="left", va="baseline",
                 fontsize=small, color="#333333")
        bars.axhline(0.0, color="#999999", linewidth=0.8)
        bars.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
        bars.set(ylim=(-1.05, 1.05), yticks=[-1, 0, 1])
        bars.set_ylabel("cos(g, ∇)", fontsize=small)
        bars.set_xlabel("" if graph else "layer", fontsize=small, labelpad=1)
        bars.tick_params(labelsize=small)
        if graph:               # vertex names, the sync set's in amber
            bars.set_xticks(range(L + 1), self.rows.names, rotation=35, ha="right",
                            fontsize=small)
            style_names(bars.get_xticklabels(), range(L + 1), self.rows.sync)
        T = len(self.trace["tick"])
        rgb, steps = panel_image(self.trace, (0, T), color, rows=self.rows)
        draw_panel(self.raster, rgb, (0, T), self.rows, steps, row_ticks(self.trace), strip=False)
        note = step_note(steps)
        self.raster.set_xlabel(f"tick (raster coloured by {color}{'; ' + note if note else ''})",
                               fontsize=small)
        self.raster.yaxis.label.set_fontsize(small)
        self.raster.tick_params(labelsize=small)
        for text in self.raster.texts:          # the ls label
            text.set_fontsize(small)
        self._key(small)

    def _tag_baselines(self):
        """Pixel rows of the x tags' baseline over the network panel and the δ tags'."""
        top = self.height * (1.0 - self.net.get_position().y1)
        x_row = top - 0.4 * self.glyphs.px
        return x_row, x_row - 1.35 * self.glyphs.px

    def _key(self, small):
        """The colour key above the raster: a shade ramp per wave; what amber outlines."""
        box = self.raster.get_position()
        levels = np.concatenate([[0.0], np.linspace(palette.FLOOR, 1.0, 24)])
        zero = np.zeros_like(levels)
        ramps = np.stack([palette.mix(levels, zero), palette.mix(zero, levels),
                          palette.mix(levels, levels)])
        y0, h = 0.81, 0.12
        key = self.key_ax = self.fig.add_axes((box.x0 + 0.07, y0, 0.15, h))
        key.imshow(ramps, aspect="auto", interpolation="nearest", origin="upper",
                   extent=(-0.5 / 24, 1 + 0.5 / 24, 2.5, -0.5))
        key.set_yticks([0, 1, 2], ["|x|", "|δ|", "both"], fontsize=small)
        for label, colour in zip(key.get_yticklabels(), (palette.RED, palette.BLUE,
                                                         palette.PURPLE)):
            label.set_color(colour)
        scale = "95th pct" if self.states.has_states else "max"
        key.set_xticks([0.0, 1.0], ["0", f"layer {scale}"], fontsize=small)
        key.tick_params(length=2, pad=1)
        for label, ha in zip(key.get_xticklabels(), ("left", "right")):
            label.set_ha(ha)
        key.set_title("neuron colour", fontsize=small, pad=2)
        right = box.x0 + 0.25
        self.fig.text(right, y0 + h, "deeper: larger |value|\nfull: saturated", fontsize=small,
                      va="top", ha="left", color="#333333")
        outline = Patch(facecolor="none", edgecolor=palette.LS_COLOUR, linewidth=1.6,
                        label="sync set" if self.rows.graph else "ls")
        self.fig.legend(handles=[outline], loc="upper left", bbox_to_anchor=(right, y0 - 0.01),
                        fontsize=small, frameon=False, handlelength=1.2, borderaxespad=0.0,
                        borderpad=0.0)

    def _pixel_maps(self):
        L, rows = self.depth, self.states.rows
        self.net_box, xs, ys = self._pixel_grid(self.net, L + 0.5, rows - 0.5)
        self.col_layer = np.clip(np.rint(xs).astype(int), 0, L)
        self.row_neuron = np.clip(np.rint(ys).astype(int), 0, rows - 1)
        self.ls_cols = [self._col_range(self.net, l - 0.5, l + 0.5) for l in self.rows.sync]
        self.bar_cols = [self._col_range(self.bars_ax, l - 0.35, l + 0.35) for l in range(1, L + 1)]
        self.bar_zero = self._to_pixel(self.bars_ax, 0, 0.0)[1]
        self.bar_unit = self.bar_zero - self._to_pixel(self.bars_ax, 0, 1.0)[1]
        T = len(self.trace["tick"])
        self.raster_rows = (int(np.ceil(self._to_pixel(self.raster, 0, L + 0.5)[1])),
                            int(np.floor(self._to_pixel(self.raster, 0, -0.5)[1])))
        self.raster_x = [self._to_pixel(self.raster, t, 0)[0] for t in (0, max(T - 1, 1))]
        # Glyph boxes' bottom rows: x tags just above the panel, δ tags one row higher.
        baseline = self._tag_baselines()
        below = self.glyphs.height - self.glyphs.base_row
        self.tag_row = [row + below for row in baseline]
        spacing = self._to_pixel(self.net, 1, 0)[0] - self._to_pixel(self.net, 0, 0)[0]
        widest = self.glyphs.mask(str(int(max(self.tag_x.max(), self.tag_d.max(), 0))))[1]
        # {trace column: pixel column} of the labelled columns, in picture order
        self.tag_columns = {int(self.rows.order[p]): self._to_pixel(self.net, p, 0)[0]
                            for p in self._tag_layers(spacing, widest)}
        half = min(0.5 * widest + 2, 0.5 * spacing - 1)
        self.tag_span = (int(round(baseline[1] - 0.95 * self.glyphs.px)),
                         int(round(baseline[0] + 0.3 * self.glyphs.px)), half)

    def _tag_layers(self, spacing, widest):
        """Picture columns whose tags are written: every k-th counted from the sync
        set (k = 1 if the widest tag fits), so ls shows its pair and none overlap."""
        L = self.depth
        # A deep network has columns narrower than a pixel: divide by the true spacing.
        step = max(int(np.ceil((widest + 6) / max(spacing, 1e-6))), int(np.ceil((L + 1) / 12)))
        anchor = self.rows.sync[0] if self.rows.sync else 0
        shown = set(range(anchor % step, L + 1, step))
        for p in self.rows.sync:                       # a second ls row (even L) or set member
            if all(abs(p - q) >= step for q in shown if q not in self.rows.sync):
                shown.add(p)
            else:
                shown = {q for q in shown if abs(q - p) >= step or q in self.rows.sync} | {p}
        return sorted(shown)

    def _col_range(self, ax, x0, x1):
        return tuple(int(np.round(self._to_pixel(ax, x, 0)[0])) for x in (x0, x1))

    def neuron_pixel(self, layer, neuron):
        """(column, row) of the centre of a neuron's cell (``layer``: trace column)."""
        x, y = self._to_pixel(self.net, self.rows.position(layer), neuron)
        return int(x), int(y)

    def cursor_pixel(self, t):
        """(column, row) of a pixel on the time cursor at row ``t``, mid-raster."""
        (x0, x1), (top, bottom) = self.raster_x, self.raster_rows
        column = int(round(x0 + (x1 - x0) * t / max(len(self.trace["tick"]) - 1, 1)))
        return column, (top + bottom) // 2

    def tag_box(self, layer):
        """(top, bottom, left, right) of the tag pair's box over trace column ``layer``."""
        if layer not in self.tag_columns:
            return None
        top, bottom, half = self.tag_span
        x = self.tag_columns[layer]
        return top, bottom, int(round(x - half)), int(round(x + half))

    def indices(self, t):
        """The frame for tick ``t`` as palette indices (height, width) uint8."""
        t = int(t)
        frame = self.background.copy()
        top, bottom, left, right = self.net_box
        small = self.palette.index_float(self.states.rgb(t)[:, self.rows.order])
        frame[top:bottom, left:right] = small[self.row_neuron][:, self.col_layer]
        amber = self.ink["amber"]
        for a, b in self.ls_cols:
            frame[top:bottom, max(a - 1, 0):a + 1] = amber
            frame[top:bottom, b - 1:b + 1] = amber
            frame[max(top - 1, 0):top + 1, a:b] = amber
            frame[bottom - 1:bottom + 1, a:b] = amber
        for l, (a, b) in enumerate(self.bar_cols, start=1):         # the mismatch bars
            value = self.cos[t, self.rows.order[l] - 1]
            if not np.isfinite(value):
                continue
            lo, hi = sorted((int(round(self.bar_zero)),
                             int(round(self.bar_zero - value * self.bar_unit))))
            hi = max(hi, lo + 1)
            frame[lo:hi, a:b] = self.ink["bar"]
            if l in self.rows.sync:
                frame[lo:hi, a:a + 2] = amber
                frame[lo:hi, b - 2:b] = amber
        c, _ = self.cursor_pixel(t)
        frame[self.raster_rows[0]:self.raster_rows[1], max(c - 1, 0):c + 1] = self.ink["cursor"]
        for v, x in self.tag_columns.items():       # the frames g[v] pairs: x red, δ blue
            if v == 0:
                continue
            fx, fd = int(self.tag_x[t, v]), int(self.tag_d[t, v])
            for tag, row, ink in ((fx, self.tag_row[0], palette.RED),
                                  (fd, self.tag_row[1], palette.BLUE)):
                self._paint_text(frame, self.glyphs, str(tag) if tag >= 0 else "·", x, row, ink,
                                 "center")
            if fx >= 0 and fx == fd:                    # one frame: boxed in amber
                top, bottom, left, right = self.tag_box(v)
                w = max(1, int(round(1.6 * self.scale)))
                frame[top:top + w, left:right] = amber
                frame[bottom - w:bottom, left:right] = amber
                frame[top:bottom, left:left + w] = amber
                frame[top:bottom, right - w:right] = amber
        title = (f"{self.name}   tick {int(self.trace['tick'][t])}   "        # t: a row
                 f"stream frame {int(self.trace['stream_frame'][t])}").strip()
        self._paint_text(frame, self.title_glyphs, title, 6 * self.scale,
                         self.title_glyphs.height + 4 * self.scale, np.zeros(3), "left")
        return frame


def render_frames(trace, every=1, size=DEFAULT_SIZE, color="magnitude"):
    """(a generator of GIF frames (height, width) uint8, palette (≤256, 3) uint8)."""
    anim = WaveAnimator(trace, size=size, color=color)
    ticks = frame_ticks(trace, every, frame_limit(anim.width, anim.height))
    return (anim.indices(t) for t in ticks), anim.palette.colours


def write_gif(path, trace, every=1, size=DEFAULT_SIZE, color="magnitude", fps=DEFAULT_FPS):
    """Write the looping wave GIF atomically at ``path``; returns its frame count."""
    duration = gif_duration(fps)
    frames, colours = render_frames(trace, every=every, size=size, color=color)
    return gifstream.write_gif(path, frames, colours, duration)
