"""The time-travel viewer: one self-contained view.html per run.

``write_view(run_dir)`` turns a saved run's results (no simulation) into one
HTML file with everything embedded -- the data as compact JSON with
base64-packed arrays (``data``), the page's script and style (view.html,
view.js, view.css, shipped as package data) -- so it works from ``file://``
with no network access, no CDN and no server. It shows diffusion runs (the
forward wave red, δ ≠ 0 blue, both purple; neuron strips of x and δ at the
cursor; the mismatch of g against backprop per layer; ls highlighted),
ar_converge runs (the relaxation wave and the error to the fixed point per
layer) and pc_wave runs (‖ε‖ per level and per vertex). ``trace_html(trace)``
is the same viewer as an HTML string for a notebook (a Trace's
``_repr_html_``).
"""
import html
import json
import os
from importlib import resources

from .. import manifest
from ..errors import SimulatorError
from ..files import write_text
from .data import diffusion_payload, run_payload

GENERATOR = manifest.VIEW_GENERATOR
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
    """Write the viewer of the saved run in ``run_dir`` (its folder, or its
    trace.npz / run.json) to ``out_path`` (default ``run_dir/view.html``; a
    folder gets a view.html inside) atomically, and return its path. A file
    already there is replaced only if tickprop wrote it (the folder's
    manifest lists it as it is; without a manifest, a page of tickprop view);
    written into a tickprop output (a run folder), the page is listed in its
    manifest. Stale temporaries of dead processes in that folder are removed
    first. The run's kind must be diffusion, ar_converge or pc_wave. Errors
    (not a run, damaged files, another kind, a foreign or changed file at
    ``out_path``) are one SimulatorError."""
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
    """Refuse to replace a file that is not a page of tickprop view (its
    generator tag), or that the manifest of its folder does not list as it is
    (changed since, or not written by tickprop)."""
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
    if GENERATOR not in head:
        raise SimulatorError(f"{path}: exists and was not written by tickprop view; choose "
                             "another --out or move it away")


def trace_html(trace, height=NOTEBOOK_HEIGHT):
    """The viewer of a diffusion Trace as an HTML string for a notebook: the
    whole view.html in an iframe's ``srcdoc`` (its script runs apart from the
    notebook's), ``height`` pixels tall. A Trace returns it from
    ``_repr_html_``."""
    page = page_html(diffusion_payload(trace))
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
            'title="tickprop view"></iframe>')


__all__ = ["write_view", "trace_html", "page_html", "run_payload", "diffusion_payload"]
