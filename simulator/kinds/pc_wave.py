"""The pc_wave kind: the Z-IL (or IL) error wave of one update on a builder's
graph, saved as wave.npz and drawn as pc_wave.png and pc_wave.gif."""
import os

import numpy as np

from ..experiments.pc.inference import error_wave
from ..files import write_npz
from ..runfiles import read_wave
from ..scene import spec_of
from .base import Kind, done_in, run_keys, saved_section, wanted


def prepare(name, scene, options=None):
    """The job runs one update and saves ‖ε‖ per level and per vertex (wave.npz)."""
    spec = spec_of(scene)
    wv, run = spec.wave, spec.run

    def job(folder, progress=None):
        wave = error_wave(wv.architecture, wv.method, levelled=wv.levelled,
                          T=wv.il_steps, gamma=wv.gamma, lr=wv.lr, seed=run.seed,
                          dtype=run.dtype)
        by_level = np.asarray(wave.by_level, dtype=float)
        write_npz(os.path.join(folder, "wave.npz"),
                  {k: np.asarray(getattr(wave, k)) for k in ("by_level", "by_vertex", "levels")})
        return {"ticks": int(by_level.shape[0]), "levels": int(by_level.shape[1]),
                "overflow": bool(np.isinf(by_level).any())}
    return job


def draw(folder, meta, options):
    """pc_wave.png (‖ε‖ per level against inference tick, output on top) and
    pc_wave.gif."""
    png, gif = wanted(options)
    by_level = np.asarray(read_wave(folder)["by_level"], dtype=float)[:, ::-1]
    wv = saved_section(folder, meta, "pc_wave", "wave")
    n = by_level.shape[1]
    labels = dict(title=f"{str(wv.get('method', '')).upper()} error wave ‖ε‖ per level, "
                        f"{wv.get('architecture', '')} "
                        f"({'levelled' if wv.get('levelled') else 'not levelled'})",
                  level_label="level (distance to output)",
                  level_names=range(n - 1, -1, -1), tick_label="inference tick")
    if not (png or gif):
        return {}       # matplotlib is imported only to draw
    from ..render.levels import write_wave_gif, write_wave_png
    return {f"pc_wave.{ext}": write(os.path.join(folder, f"pc_wave.{ext}"), by_level, **labels)
            for ext, write, want in (("png", write_wave_png, png), ("gif", write_wave_gif, gif))
            if want}


METHODS = {"zil": "Z-IL", "il": "IL"}


def summary(folder, meta):
    """Headline, then the inference tick at which ‖ε‖ first becomes non-zero at
    each level (output first) and the largest ‖ε‖."""
    by_level = np.asarray(read_wave(folder)["by_level"], dtype=float)
    wv = saved_section(folder, meta, "pc_wave", "wave")
    T, n = by_level.shape
    nonzero = np.abs(by_level) > 0
    first = [int(np.argmax(nonzero[:, k])) if nonzero[:, k].any() else None for k in range(n)]
    reached = [f for f in first if f is not None]
    lines = [f"{done_in(meta)}: {METHODS.get(wv.get('method'), wv.get('method'))} "
             f"error wave on {wv.get('architecture', '')}, {n} levels, {T} inference ticks"]
    if first == list(range(n)):
        lines.append(f"  ‖ε‖ moves one level per tick: level k (from the output) first "
                     f"non-zero at tick k, the input side at tick {n - 1}")
    else:
        lines.append("  first non-zero tick per level (output first): "
                     + " ".join("-" if f is None else str(f) for f in first))
    finite = by_level[np.isfinite(by_level)]
    peak = f"{finite.max():.3g}" if len(finite) else "-"
    lines.append(f"  levels reached: {len(reached)} of {n}; largest ‖ε‖ {peak}"
                 + ("; OVERFLOW (inf) in the wave" if np.isinf(by_level).any() else ""))
    return lines


KIND = Kind("pc_wave", prepare, draw,
            options=run_keys("seed", "dtype"),
            refuse={"ticks": "pc_wave scenes have no run.ticks; IL's length is "
                             "--set wave.il_steps=T (Z-IL takes one tick per level)",
                    "device": "pc_wave scenes run on the CPU only (numpy)"},
            summary=summary)
