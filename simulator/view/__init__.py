"""The time-travel viewer: one self-contained view.html per saved run (the data of
``data`` and the page's view.html/js/css inlined, no network needed), or as an
HTML string for a notebook (``trace_html``, a Trace's ``_repr_html_``).
"""
import html
import json
import os
from importlib import resources

from .. import manifest
from ..errors import SimulatorError
from ..files import write_text
from ..probes import Trace
from .data import diffusion_payload, run_payload

NOTEBOOK_HEIGHT = 760          # pixels of the notebook's iframe


def _asset(name):
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page_html(payload):
    """view.html with its style, script and ``payload`` (``data.run_payload``) inlined."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).replace("<", "\\u003c")   # no "</script>" in the data
    page = _asset("view.html")
    for token, value in (("@@TITLE@@", html.escape(str(payload.get("name", "tickprop")))),
                         ("@@CSS@@", _asset("view.css")), ("@@JS@@", _asset("view.js"))):
        page = page.replace(token, value)
    return page.replace("@@DATA@@", data)


def write_view(run_dir, out_path=None):
    """Write the viewer of the run saved in ``run_dir`` (or a file in it) atomically to
    ``out_path`` (default, or in a folder: view.html), listed in the manifest, and
    return its path; it replaces only an unchanged tickprop page. Errors: SimulatorError."""
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
    """Refuse to replace a changed or foreign file, or one not a tickprop view page."""
    folder, name = os.path.split(os.path.abspath(path))
    status = manifest.file_status(folder, name)
    refused = {"changed": "changed since tickprop view wrote it",
               "foreign": "exists and was not written by tickprop view (the folder's "
                          f"{manifest.MANIFEST} does not list it)"}
    if status == "missing":
        return
    if status in refused:
        raise SimulatorError(f"{path}: {refused[status]}; choose another --out or move it away")
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


# A Trace's _repr_html_ in a notebook is this viewer: wired as the viewer loads (it
# stands a floor above probes/, which cannot import it).
Trace.html_viewer = staticmethod(trace_html)
