"""The pc_table kind: Tables 1 and 2 of Salvatori et al. 2022, saved as
table1.csv and table2.csv with the rows in run.json, and drawn as tables.md.
``tickprop pc-table`` is this kind with its options as flags."""
import csv
import os

from ..experiments.pc.tables import format_markdown, table1, table2, write_csv
from ..files import write_text
from ..errors import SimulatorError
from ..scene import spec_of
from .base import Kind, done_in, run_keys

LEVELLED = {"both": (True, False), "levelled": (True,), "unlevelled": (False,)}


def prepare(name, scene, options=None):
    """The job measures Tables 1 and 2 in every precision of table.dtypes, saved as CSV."""
    spec = spec_of(scene)
    tb, seed = spec.table, spec.run.seed

    def job(folder, progress=None):
        step = progress or (lambda n: None)
        rows1, rows2 = [], []
        for dtype in tb.dtypes:
            for flag in LEVELLED[tb.levelled]:
                rows1 += table1(dtype=dtype, levelled=flag, seed=seed)
                step(1)
        for dtype in tb.dtypes:
            rows2 += table2(dtype=dtype, T=tb.il_steps, repeats=tb.repeats, seed=seed)
            step(1)
        for k, rows in ((1, rows1), (2, rows2)):
            write_csv(rows, os.path.join(folder, f"table{k}.csv"))
        return {"table1": rows1, "table2": rows2, "markdown": markdown(rows1, rows2)}
    return job


def markdown(rows1, rows2):
    """Both tables as one Markdown text."""
    return ("## Table 1: one BP update vs one Z-IL update\n\n" + format_markdown(rows1) +
            "\n\n## Table 2: time per update\n\n" + format_markdown(rows2) + "\n")


def draw(folder, meta, options):
    """tables.md from the rows run.json keeps."""
    summary = meta.get("summary") if isinstance(meta, dict) else None
    if not isinstance(summary, dict) or not all(
            isinstance(summary.get(k), list) for k in ("table1", "table2")):
        raise SimulatorError(f"{os.path.join(folder, 'run.json')}: damaged (no table rows)")
    text = markdown(summary["table1"], summary["table2"])
    return {"tables.md": write_text(os.path.join(folder, "tables.md"), text)}


def summary(folder, meta):
    """Headline, Table 1's largest divergence of Z-IL from BP per precision, Table 2."""
    rows1, rows2 = (read_csv(os.path.join(folder, f"table{k}.csv")) for k in (1, 2))
    lines = [done_in(meta)]
    for dtype in sorted({r["dtype"] for r in rows1}):
        mine = [r for r in rows1 if r["dtype"] == dtype]
        worst = max(mine, key=lambda r: float(r["divergence_rel"]))
        lines.append(f"  Table 1 ({dtype}): max relative divergence Z-IL vs BP "
                     f"{float(worst['divergence_rel']):.3g} ({worst['architecture']}, "
                     f"{len(mine)} rows)")
    for r in rows2:
        lines.append(f"  Table 2 {r['architecture']} ({r['dtype']}): "
                     f"Z-IL {float(r['zil_ms']):.3g} ms "
                     f"= {float(r['zil_over_bp']):.3g} × BP {float(r['bp_ms']):.3g} ms")
    return lines


def read_csv(path):
    """The rows of a table CSV as dicts of strings (or one SimulatorError naming it)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SimulatorError(f"{path}: missing; the run folder is incomplete") from None
    except (OSError, ValueError, csv.Error) as exc:
        raise SimulatorError(f"{path}: damaged ({exc})") from None
    return rows


KIND = Kind("pc_table", prepare, draw,
            options=dict(run_keys("seed"), dtype=lambda v: {"table.dtypes": [v]}),
            refuse={"ticks": "pc_table scenes have no run.ticks; IL's length is "
                             "--set table.il_steps=T",
                    "device": "pc_table scenes run on the CPU only (numpy)"},
            progress=lambda scene: len(spec_of(scene).table.dtypes) * (
                len(LEVELLED[spec_of(scene).table.levelled]) + 1),
            summary=summary)
