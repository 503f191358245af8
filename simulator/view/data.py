"""A run's saved results as the viewer's payload: one JSON document (layout:
docs/design/view_data.md) of the saved arrays as base64 records, thinned (every
k-th tick, evenly spaced neurons) to fit MAX_FRAMES and MAX_STATE_VALUES.
"""
import base64
import os

import numpy as np

from ..analysis import palette
from ..analysis.schedule_data import check_schedules
from ..errors import SimulatorError
from ..runfiles import read_relaxation, read_run_meta, read_schedules, read_trace, read_wave
from ..engine.tick import synchronized_layers
from ..model.graph import IDENTITY_PREFIX, delay_names
from ..probes import Trace

FORMAT = 1
MAX_FRAMES = 2000              # viewer frames (ticks) embedded at most
MAX_NEURONS = 64               # neurons per layer embedded at most
MIN_NEURONS = 8                # neurons per layer kept before ticks are thinned
MAX_STATE_VALUES = 1_500_000   # x and δ values embedded at most (float32: ~8 MB base64)
WAVE_ETA = 0.1                 # the relaxation rate shown first (as relaxation_wave.png)
_DTYPES = {"f8": "<f8", "f4": "<f4", "i4": "<i4", "u1": "u1"}


def encode(array, dtype):
    """``array`` as a {"dtype" (f8, f4, i4, u1), "shape", "b64"} record, little-endian."""
    a = np.ascontiguousarray(np.asarray(array).astype(_DTYPES[dtype]))
    return {"dtype": dtype, "shape": list(a.shape),
            "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode(record):
    """The numpy array of an ``encode`` record (for tests and tools)."""
    raw = base64.b64decode(record["b64"])
    return np.frombuffer(raw, dtype=_DTYPES[record["dtype"]]).reshape(record["shape"])


def _ordinal(k):
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def frame_step(ticks, limit=MAX_FRAMES):
    """The smallest step k with ceil(ticks / k) <= limit."""
    return max(1, -(-int(ticks) // int(limit)))


def neuron_index(size, limit):
    """At most ``limit`` evenly spaced neuron indices of ``size``, first and last in."""
    size = int(size)
    if size <= limit:
        return np.arange(size)
    return np.unique(np.round(np.linspace(0, size - 1, int(limit))).astype(int))


def run_payload(folder):
    """The payload of a saved run folder of a kind in VIEWABLE, else a SimulatorError."""
    folder = os.fspath(folder)
    meta = read_run_meta(folder)
    kind = meta.get("kind") or meta.get("scene", {}).get("kind") or "diffusion"
    viewable = {"diffusion": (read_trace, diffusion_payload),
                "ar_converge": (read_relaxation, relaxation_payload),
                "pc_wave": (read_wave, pc_payload),
                "schedules": (read_schedules, schedules_payload)}
    if kind not in viewable:
        raise SimulatorError(f"{folder}: a {kind} run has no ticks to scrub through; tickprop "
                             f"view shows {', '.join(viewable)} runs")
    read, payload = viewable[kind]
    return payload(read(folder), meta)


def _scene(meta):
    scene = meta.get("scene") if isinstance(meta, dict) else None
    return scene if isinstance(scene, dict) else {}


def _payload(kind, meta, tick_label, ticks, notes, views, default_view=0, title=""):
    """The document around ``views``; ``title`` when the scene has no description."""
    title = str(_scene(meta).get("description", "")) or title
    meta = meta if isinstance(meta, dict) else {}
    return {"format": FORMAT, "kind": kind, "name": str(meta.get("name", "") or kind),
            "title": title, "tick_label": tick_label,
            "ticks": [int(t) for t in ticks], "notes": notes, "views": views,
            "default_view": int(default_view), "palette": palette.export()}


TAG_LABELS = {"input": "x carries frame (input tag)", "supervision": "δ's supervision frame",
              "output": "δ's output-activity frame", "pair": "frame of the x that g pairs with δ"}
COLOUR_LABELS = {"magnitude": "shade ∝ norm / the layer's largest over the run",
                 "tag": "shades alternate with the stream frame of x and of δ's target"}
FIELD_LABELS = {"x_norm": "‖x‖", "delta_norm": "‖δ‖", "mismatch_cos": "cos(g, backprop)",
                "mismatch_rel": "‖g − backprop‖ / ‖backprop‖"}


def layer_names(trace, meta=None):
    """A name per trace column: a graph's vertex names, a chain's from the scene's
    [[network.layers]] (the input "input"), else the indices."""
    n = len(trace["sizes"])
    if "vertex_names" in trace:
        return [str(v) for v in trace["vertex_names"]]
    network = _scene(meta).get("network")
    layers = network.get("layers") if isinstance(network, dict) else None
    names = [str(l.get("name", "")) if isinstance(l, dict) else "" for l in layers or []]
    if len(names) == n - 1 and all(names):
        return ["input"] + names
    return [str(l) for l in range(n)]


def diffusion_rows(trace, meta=None):
    """(rows bottom first, sync label, edges [parent row, child row, level gap]): layers
    0..L with ls (Eq. 6), or a graph's vertices by level (ties in model order) with its
    synchronization set; an identity vertex named as a delay of its source."""
    n = len(trace["sizes"])
    names = layer_names(trace, meta)
    if "vertex_names" not in trace:
        sync = set(synchronized_layers(n - 1))
        label = (f"ls = {min(sync)}" if len(sync) == 1
                 else "closest to ls: {}, {}".format(*sorted(sync)))
        named = names[-1] != str(n - 1)
        rows = [{"name": names[l], "label": f"{names[l]} ({l})" if named else names[l],
                 "column": l, "level": l, "sync": l in sync, "identity": False}
                for l in range(n)]
        return rows, label, [[l, l + 1, 1] for l in range(n - 1)]
    levels = [int(v) for v in trace["vertex_levels"]]
    flags = np.asarray(trace["vertex_sync"], dtype=bool) if "vertex_sync" in trace \
        else np.zeros(n, dtype=bool)
    order = sorted(range(n), key=lambda v: (levels[v], v))
    position = {v: r for r, v in enumerate(order)}
    pairs = np.asarray(trace["vertex_edges"]).reshape(-1, 2) if "vertex_edges" in trace else []
    shown = delay_names(names, pairs)
    rows = [{"name": names[v], "label": f"{shown[v]} ({levels[v]})", "column": v,
             "level": levels[v], "sync": bool(flags[v]),
             "identity": names[v].startswith(IDENTITY_PREFIX)}
            for v in order]
    return rows, "sync set", [[position[int(p)], position[int(c)], levels[int(c)] - levels[int(p)]]
                              for p, c in pairs]


def wave_cells(trace):
    """(T, columns) u1: bit 0 where x carries a frame, bit 1 where δ is finite and ≠ 0,
    bit 2 where the pair tags (a graph's oldest and newest) and the supervision tag
    name one frame (as stream frames when every tick was recorded, else ticks)."""
    fwd = np.asarray(trace["tag_input"]) >= 0
    d = np.asarray(trace["delta_norm"], dtype=float)
    bwd = np.isfinite(d) & (d != 0)
    sup = np.asarray(trace["tag_supervision"])
    tags = [np.asarray(trace[k]) for k in ("tag_pair", "tag_pair_hi") if k in trace]
    ticks, frames = np.asarray(trace["tick"]), np.asarray(trace["stream_frame"])
    every_tick = len(ticks) and np.array_equal(ticks, np.arange(len(ticks)))

    def frame(t):
        return np.where(t >= 0, frames[np.clip(t, 0, len(frames) - 1)], -1) if every_tick else t
    same = (sup >= 0) & (frame(sup) >= 0)
    for t in tags:
        same &= (t >= 0) & (frame(t) == frame(sup))
    return fwd.astype(np.uint8) | (bwd.astype(np.uint8) << 1) | (same.astype(np.uint8) << 2)


def wave_colours(trace, frames, cols, step=1):
    """{"magnitude", "tag"}: RGB bytes (frames, columns, 3) of a diffusion Trace's raster
    as the PNGs colour it (simulator/render/raster.py)."""
    def tag(key, newest=False):
        hi = "tag_" + key + "_hi"
        return np.asarray(trace[hi] if newest and hi in trace else trace["tag_" + key])

    def oldest(key):
        return np.where(tag(key) >= 0, tag(key), tag(key, newest=True))
    x, d = (np.asarray(trace[k], dtype=float) for k in ("x_norm", "delta_norm"))
    fwd, bwd = tag("input", newest=True) >= 0, np.nan_to_num(d) > 0
    bwd[:, 0] = False
    pick = np.ix_(frames, cols)
    xs, ds = (np.nan_to_num(a).max(axis=0)[cols] for a in (x, d))
    magnitude = palette.mix(palette.magnitude_levels(x[pick], fwd[pick], xs),
                            palette.magnitude_levels(d[pick], bwd[pick], ds))
    period = palette.tag_period(trace["stream_frame"], step)
    x_frames = trace.stream_frames_of(oldest("input")[pick])
    d_frames = trace.stream_frames_of(np.where(bwd, oldest("supervision"), -1)[pick])
    tags = palette.mix(palette.tag_levels(x_frames, fwd[pick], period),
                       palette.tag_levels(d_frames, bwd[pick], period),
                       strength="mean", lean=palette.TAG_LEAN)
    return {"magnitude": palette.to_bytes(magnitude), "tag": palette.to_bytes(tags)}


def diffusion_payload(trace, meta=None, max_frames=MAX_FRAMES, max_states=MAX_STATE_VALUES):
    """The payload of a diffusion Trace (or its arrays) and its run.json ``meta``."""
    meta = getattr(trace, "meta", {}) if meta is None else meta
    trace = trace if isinstance(trace, Trace) else Trace(trace, meta)
    rows, sync_label, edges = diffusion_rows(trace, meta)
    cols = np.array([r["column"] for r in rows])
    T, n = np.shape(trace["x_norm"])
    R, ticks, notes = len(rows), np.asarray(trace["tick"]), []
    if len(ticks) > 1 and ticks[1] - ticks[0] > 1:
        notes.append(f"The run recorded every {_ordinal(int(ticks[1] - ticks[0]))} tick "
                     "(record.every).")
    k, nmax = frame_step(T, max_frames), 0
    has_states = "state_x" in trace and "state_layers" in trace
    if has_states:
        sizes = np.asarray(trace["sizes"])
        recorded = [int(l) for l in np.asarray(trace["state_layers"])]
        widest = max(int(sizes[c]) for c in recorded) if recorded else 0
        nmax = min(widest, MAX_NEURONS)
        while nmax > MIN_NEURONS and 2 * -(-T // k) * R * nmax > max_states:
            nmax = max(MIN_NEURONS, nmax // 2)
        k = max(k, frame_step(T * 2 * R * max(nmax, 1), max_states))
        if nmax < widest:
            notes.append(f"Layers wider than {nmax} neurons show {nmax} evenly spaced ones "
                         "(hover names each neuron).")
    frames = np.arange(0, T, k)
    if k > 1:
        notes.append(f"The trace is too long to embed whole: showing every {_ordinal(k)} "
                     f"recorded tick ({len(frames)} of {T}).")
    pick = np.ix_(frames, cols)
    fields = {key: np.asarray(trace[key], dtype=float)[pick] for key in ("x_norm", "delta_norm")}
    for key in ("mismatch_cos", "mismatch_rel"):      # absent without record.metrics: NaN
        full = np.full((T, n), np.nan)
        if key in trace:
            full[:, 1:] = np.asarray(trace[key], dtype=float)
        fields[key] = full[pick]
    tags = {key: np.asarray(trace["tag_" + key])[pick] for key in TAG_LABELS}
    tag_labels = dict(TAG_LABELS)
    for key in ("input", "supervision", "pair"):     # a graph vertex may mix frames: newest too
        if "tag_" + key + "_hi" in trace:
            tags[key + "_hi"] = np.asarray(trace["tag_" + key + "_hi"])[pick]
            tag_labels[key + "_hi"] = tag_labels[key] + ", newest"
    states = _states(trace, frames, rows, nmax, notes) if has_states else None
    colours = wave_colours(trace, frames, cols, k)
    if not has_states:
        notes.append("No neuron states recorded (record.states = false): the neuron strips "
                     "are empty.")
    graph = "vertex_names" in trace
    view = {"label": "vertices by level" if graph else "layers",
            "row_label": "vertex (level)" if graph else "layer (0 = input)",
            "rows": rows, "sync_label": sync_label, "edges": edges, "raster": {"mode": "waves"},
            "fields": {k: encode(v, "f8") for k, v in fields.items()}, "field_labels": FIELD_LABELS,
            "tags": {k: encode(v, "i4") for k, v in tags.items()}, "tag_labels": tag_labels,
            "wave": encode(wave_cells(trace)[pick], "u1"),
            "colours": {key: encode(rgb, "u1") for key, rgb in colours.items()},
            "colour_labels": COLOUR_LABELS,
            "bars": {"field": "mismatch_cos", "label": "cos(g, backprop)", "lo": -1.0,
                     "hi": 1.0, "log": False},
            "states": states,
            "stream_frame": encode(np.asarray(trace["stream_frame"])[frames], "i4")}
    return _payload("diffusion", meta, "tick", ticks[frames], notes, [view])


def _states(trace, frames, rows, nmax, notes):
    """Sample 0's x and δ (frames, rows, nmax) float32 (NaN: none), and which neurons."""
    sx, sd = np.asarray(trace["state_x"]), np.asarray(trace["state_delta"])
    layers = [int(l) for l in np.asarray(trace["state_layers"])]
    sizes = np.asarray(trace["sizes"])
    ticks = np.asarray(trace["tick"])[frames]
    stick = np.asarray(trace["state_tick"] if "state_tick" in trace else trace["tick"])
    at = np.clip(np.searchsorted(stick, ticks), 0, max(len(stick) - 1, 0))
    have = (stick[at] == ticks) if len(stick) else np.zeros(len(ticks), dtype=bool)
    x = np.full((len(frames), len(rows), max(nmax, 1)), np.nan, dtype=np.float32)
    d = np.full_like(x, np.nan)
    index = []
    for r, row in enumerate(rows):
        c = row["column"]
        if c not in layers:
            index.append([])
            continue
        j = layers.index(c)
        idx = neuron_index(sizes[c], nmax)
        index.append([int(i) for i in idx])
        x[have, r, :len(idx)] = sx[at[have], j, 0][:, idx]
        if c != 0:                 # the input has no δ (a graph trace stores its x there)
            d[have, r, :len(idx)] = sd[at[have], j, 0][:, idx]
    batch = int(sx.shape[2])
    if batch > 1:
        notes.append(f"Neuron states are those of sample 0 of the batch of {batch}.")
    if any(not i for i in index):
        notes.append("Some layers' states were not recorded (record.layers).")
    return {"x": encode(x, "f4"), "delta": encode(d, "f4"), "index": index, "sample": 0,
            "batch": batch}


def _shown_ticks(T, what, notes):
    """The rows of T shown (every k-th beyond MAX_FRAMES), a note saying so."""
    k = frame_step(T)
    frames = np.arange(0, T, k)
    if k > 1:
        notes.append(f"Showing every {_ordinal(k)} {what} ({len(frames)} of {T}).")
    return frames


def _row(name, column, level):
    return {"name": name, "column": column, "level": level, "sync": False, "identity": False}


def _norms_view(label, row_label, rows, fields, labels, raster, bars):
    """A view of magnitudes: raster ``fields[raster]``, log-scale bars ``fields[bars]``."""
    return {"label": label, "row_label": row_label, "rows": rows, "sync_label": "", "edges": [],
            "raster": {"mode": "magnitude", "field": raster, "label": labels[raster]},
            "fields": {k: encode(v, "f8") for k, v in fields.items()},
            "field_labels": {k: labels[k] for k in fields}, "tags": {}, "tag_labels": {},
            "wave": None, "bars": {"field": bars, "label": labels[bars], "log": True},
            "states": None}


def relaxation_payload(arrays, meta=None):
    """The payload of an ar_converge run: per η_x, ‖x_l(t) − x_l(t−1)‖ and the error."""
    data = {k: np.asarray(arrays[k], dtype=float) for k in ("changes", "errors", "norms")
            if k in arrays}
    eta = np.asarray(arrays["eta_x"], dtype=float).reshape(-1)
    E, T, L = data["changes"].shape
    ticks = np.asarray(arrays["ticks"]) if "ticks" in arrays else np.arange(T)
    layers = np.asarray(arrays["layers"]) if "layers" in arrays else np.arange(L)
    notes = ["Activation Relaxation saves per-layer norms, not neuron states: no neuron "
             "strips; there are no frames, so no forward or backward wave (the raster is "
             "the relaxation wave)."]
    frames = _shown_ticks(T, "relaxation tick", notes)
    ends = {0: " (input, clamped)", L - 1: " (output)"}
    rows = [_row(str(int(layers[l])) + ends.get(l, ""), l, int(layers[l])) for l in range(L)]
    labels = {"changes": "‖x_l(t) − x_l(t−1)‖", "errors": "relative error to the fixed point",
              "norms": "‖x_l(t)‖"}
    views = [_norms_view(f"η_x = {eta[e]:g}", "layer", rows,
                         {k: a[e][frames] for k, a in data.items()}, labels, "changes", "errors")
             for e in range(E)]
    variant = str(arrays["variant"]) if "variant" in arrays else ""
    title = f"Activation Relaxation ({variant})" if variant else "Activation Relaxation"
    default = int(np.argmin(np.abs(eta - WAVE_ETA))) if E else 0
    return _payload("ar_converge", meta, "relaxation tick", ticks[frames], notes, views,
                    default, title)


def pc_payload(arrays, meta=None):
    """The payload of a pc_wave run: ‖ε‖ per level (output on top) and per vertex."""
    by_level = np.asarray(arrays["by_level"], dtype=float)
    by_vertex = np.asarray(arrays["by_vertex"], dtype=float)
    levels = [int(v) for v in np.asarray(arrays["levels"]).reshape(-1)]
    T = by_level.shape[0]
    notes = ["Predictive coding saves ‖ε‖ per level and vertex, not neuron states: no neuron "
             "strips. Level = distance to the output (the output, level 0, on top)."]
    frames = _shown_ticks(T, "inference tick", notes)
    if not np.isfinite(by_level).all():
        notes.append("Some errors overflowed (drawn as 'overflow').")
    nl = by_level.shape[1]
    level_rows = [_row(f"level {d}", d, d) for d in range(nl - 1, -1, -1)]
    order = sorted(range(len(levels)), key=lambda v: (-levels[v], v))
    vertex_rows = [_row(f"v{v} (level {levels[v]})", v, levels[v]) for v in order]
    views = []
    for label, row_label, rows, a in (
            ("per level", "level (distance to output)", level_rows, by_level),
            ("per vertex", "vertex (level)", vertex_rows, by_vertex)):
        cols = [r["column"] for r in rows]
        views.append(_norms_view(label, row_label, rows, {"eps": a[np.ix_(frames, cols)]},
                                 {"eps": "‖ε‖"}, "eps", "eps"))
    wave = _scene(meta).get("wave")
    wave = wave if isinstance(wave, dict) else {}
    title = f"{str(wave.get('method', 'PC')).upper()} error wave, {wave.get('architecture', '')}"
    return _payload("pc_wave", meta, "inference tick", frames, notes, views, 0, title)


SCHEDULE_FIELDS = {
    "delay": "delay [ticks]: weights read → this update", "stale": "stale updates in between",
    "mismatch_cos": "cos(latest update, backprop of its frame)",
    "mismatch_rel": "‖latest update − backprop‖ / ‖backprop‖",
    "versions": "weight versions held", "version_bytes": "bytes of weights held"}
SCHEDULE_WAVES = {"forward": "a forward op", "backward": "a backward op",
                  "both": "both in one tick", "none": "idle",
                  "overlay": "the stage's weights update", "toggle": "update marks",
                  "cells": ["idle", "forward only", "backward only", "forward and backward"]}


def _latest(values):
    """``values`` (T, V) with each NaN after a finite value replaced by that value."""
    T = len(values)
    last = np.where(np.isfinite(values), np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(last, axis=0)
    return np.where(last >= 0, values[np.maximum(last, 0), np.arange(values.shape[1])], np.nan)


def schedules_payload(arrays, meta=None, where="schedules.npz"):
    """The payload of a schedules run: a view per schedule, rows its stages by level,
    every schedule on the longest one's ticks (idle after its own end)."""
    data = check_schedules(arrays, where)
    order = sorted(range(len(data["vertices"])), key=lambda v: (int(data["levels"][v]), v))
    shown = delay_names(data["vertices"], [])
    rows = [dict(_row(data["vertices"][v], v, int(data["levels"][v])),
                 label=f"{shown[v]} ({int(data['levels'][v])})",
                 identity=data["vertices"][v].startswith(IDENTITY_PREFIX)) for v in order]
    T = max(len(s["forward"]) for s in data["schedules"].values())
    notes = ["Each schedule is a view; all share one tick axis, so the locked ones idle where "
             "the pipelined ones work. Rows are the stages by level (distance from the input)."]
    frames = np.arange(min(T, MAX_FRAMES))     # every tick: a schedule's cells are ticks
    if T > MAX_FRAMES:
        notes.append(f"Showing ticks 0–{MAX_FRAMES - 1} of {T} (the longest schedule's run).")
    short = [f"{k} {len(s['forward'])}" for k, s in data["schedules"].items()
             if len(s["forward"]) < T]
    if short:
        notes.append(f"Ticks run, where fewer than {T} (idle after them): {', '.join(short)}.")
    views = []
    for name, s in data["schedules"].items():
        n = len(s["forward"])

        def pad(a, fill):
            out = np.full((T,) + a.shape[1:], fill, dtype=np.asarray(fill).dtype)
            out[:n] = a
            return out[np.ix_(frames, order)]
        fwd, bwd = pad(s["forward"], -1), pad(s["backward"], -1)
        fields = {"delay": pad(s["delay"], np.nan), "stale": pad(s["stale"], np.nan),
                  "mismatch_cos": pad(_latest(s["cosine"]), np.nan),
                  "mismatch_rel": pad(_latest(s["rel_error"]), np.nan),
                  "versions": pad(s["versions"].astype(float), np.nan),
                  "version_bytes": pad(s["version_bytes"].astype(float), np.nan)}
        wave = ((fwd >= 0) | ((bwd >= 0) << 1)
                | (np.isfinite(fields["delay"]) << 2)).astype(np.uint8)   # bit 2: an update
        work = palette.mix(fwd >= 0, bwd >= 0)
        tags = palette.mix(palette.tag_levels(fwd, fwd >= 0), palette.tag_levels(bwd, bwd >= 0),
                           strength="mean", lean=palette.TAG_LEAN)
        views.append({
            "label": name, "row_label": "stage (level)", "rows": rows, "sync_label": "",
            "edges": [], "raster": {"mode": "waves"}, "wave_labels": SCHEDULE_WAVES,
            "fields": {k: encode(v, "f4") for k, v in fields.items()},
            "field_labels": SCHEDULE_FIELDS,
            "tags": {"forward": encode(fwd, "i4"), "backward": encode(bwd, "i4")},
            "tag_labels": {"forward": "frame worked on forward",
                           "backward": "frame worked on backward"},
            "wave": encode(wave, "u1"),
            "colours": {"work": encode(palette.to_bytes(work), "u1"),
                        "tag": encode(palette.to_bytes(tags), "u1")},
            "colour_labels": {"work": "red forward, blue backward, purple both",
                              "tag": "shades alternate with the frame worked on"},
            "bars": {"field": "versions", "label": "weight versions held", "lo": 0.0,
                     "hi": float(max(np.nanmax(fields["versions"], initial=1.0), 1.0)),
                     "log": False},
            "states": None})
    return _payload("schedules", meta, "tick", np.arange(T)[frames], notes, views, 0,
                    f"The schedule zoo: {len(views)} schedules, {len(rows)} stages")
