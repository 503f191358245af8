"""The time-travel viewer: one self-contained view.html per run.

``write_view(run_dir)`` turns a saved run's results (no simulation) into one
HTML file with the data (``data``: compact JSON, base64-packed arrays) and the
page's script and style (view.html, view.js, view.css, package data) inlined,
so it works from ``file://`` with no network. ``trace_html(trace)`` is the same
viewer as an HTML string for a notebook (a Trace's ``_repr_html_``).
"""
import html
import json
import os
from importlib import resources

from .. import manifest
from ..errors import SimulatorError
from ..files import write_text
from .data import diffusion_payload, run_payload

NOTEBOOK_HEIGHT = 760          # pixels of the notebook's iframe


def _asset(name):
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page_html(payload):
    """view.html for a payload (``data.run_payload`` and friends): the page
    template with its style, script and the payload inlined."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    data = data.replace("<", "\\u003c")          # no "</script>" can end the data early
    page = _asset("view.html")
    for token, value in (("@@TITLE@@", html.escape(str(payload.get("name", "tickprop")))),
                         ("@@CSS@@", _asset("view.css")), ("@@JS@@", _asset("view.js"))):
        page = page.replace(token, value)
    return page.replace("@@DATA@@", data)


def write_view(run_dir, out_path=None):
    """Write the viewer of the diffusion, ar_converge or pc_wave run saved in
    ``run_dir`` (its folder, or its trace.npz / run.json) atomically to
    ``out_path`` (default and in a folder: view.html), list it in the folder's
    manifest, and return its path. A file already there is replaced only if
    tickprop view wrote it and it is unchanged. Errors (not a run, damaged
    files, another kind, a foreign or changed file) are one SimulatorError."""
    run_dir = os.fspath(run_dir)
    folder = (os.path.dirname(run_dir) or ".") if os.path.isfile(run_dir) else run_dir
    payload = run_payload(folder)
    out = os.path.join(folder, "view.html") if out_path is None else os.fspath(out_path)
    if os.path.isdir(out):
        out = os.path.join(out, "view.html")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise SimulatorError(f"{out}: the folder {parent} does not exist")
    manifest.clean_stale(parent)
    _check_replaceable(out)
    page = page_html(payload)
    with manifest.recording(parent):
        return write_text(out, page)


def _check_replaceable(path):
    """Refuse to replace a file its folder's manifest does not list as it is, or
    that is not a page of tickprop view (its generator tag)."""
    folder, name = os.path.split(os.path.abspath(path))
    status = manifest.file_status(folder, name)
    if status == "missing":
        return
    if status == "changed":
        raise SimulatorError(f"{path}: changed since tickprop view wrote it; choose another "
                             "--out or move it away")
    if status == "foreign":
        raise SimulatorError(f"{path}: exists and was not written by tickprop view (the "
                             f"folder's {manifest.MANIFEST} does not list it); choose another "
                             "--out or move it away")
    if not os.path.isfile(path):
        raise SimulatorError(f"{path}: exists and is not a file; choose another --out")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(2048)
    except OSError as exc:
        raise SimulatorError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if manifest.VIEW_GENERATOR not in head:
        raise SimulatorError(f"{path}: exists and was not written by tickprop view; choose "
                             "another --out or move it away")


def trace_html(trace, height=NOTEBOOK_HEIGHT):
    """The viewer of a diffusion Trace for a notebook: view.html in an iframe's
    ``srcdoc`` (its script runs apart from the notebook's), ``height`` px tall."""
    page = page_html(diffusion_payload(trace))
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
            'title="tickprop view"></iframe>')
