"""The pc_table kind: Tables 1 and 2 of Salvatori et al. (paper 002), saved as
table1.csv and table2.csv with the rows in run.json, and drawn as tables.md.
``tickprop pc-table`` is this kind with its options as flags."""
import os

from ..pc.tables import format_markdown, table1, table2, write_csv
from ..files import atomic_write
from ..errors import SimulatorError
from .base import Kind

LEVELLED = {"both": (True, False), "levelled": (True,), "unlevelled": (False,)}


def prepare(name, scene, options=None):
    """Nothing to refuse beyond the schema; the job measures Table 1 for every
    precision in table.dtypes (levelled, unlevelled or both) and Table 2 (time
    per update) in every precision too, and saves both as CSV."""
    tb, seed = scene["table"], scene["run"]["seed"]

    def job(folder, progress=None):
        rows1 = [row for dtype in tb["dtypes"] for flag in LEVELLED[tb["levelled"]]
                 for row in table1(dtype=dtype, levelled=flag, seed=seed)]
        rows2 = [row for dtype in tb["dtypes"]
                 for row in table2(dtype=dtype, T=tb["il_steps"], repeats=tb["repeats"],
                                   seed=seed)]
        write_csv(rows1, os.path.join(folder, "table1.csv"))
        write_csv(rows2, os.path.join(folder, "table2.csv"))
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
    path = os.path.join(folder, "tables.md")
    atomic_write(path, lambda f: f.write(text))
    return {"tables.md": path}


KIND = Kind("pc_table", prepare, draw,
            options={"seed": "run.seed", "dtype": lambda v: {"table.dtypes": [v]}},
            refuse={"ticks": "pc_table scenes have no run.ticks; IL's length is "
                             "--set table.il_steps=T",
                    "device": "pc_table scenes run on the CPU only (numpy)"})
