"""Synchronization analysis of a recorded run (Betti & Gori, Eqs. 5–6; facts C/D),
read off the trace's provenance tags and paired with the mismatch: in g[t,l] = δ[t,l]
x[t,l−1]ᵀ the input took l − 1 forward steps and the supervision L − l backward ones, so
(d_y = 0) they share a frame exactly at ls = (L+1)/2 (δ's other factors may not: Fact D)."""
import numpy as np

from ..engine.tick import synchronized_layers


def gradient_delay(depth):
    """(L−1)/2: ticks between a frame entering layer 0 and its gradient at ls
    (an int for odd L; for even L a half-integer no layer meets exactly)."""
    delay = (int(depth) - 1) / 2
    return int(delay) if float(delay).is_integer() else delay


def steady_window(trace):
    """(start, stop) rows once every layer's δ carries a real frame's output
    error and its g pairs with a real frame; the whole run if it never fills."""
    ready = ((trace["tag_output"][:, 1:] >= 0).all(axis=1)
             & (trace["tag_pair"][:, 1:] >= 0).all(axis=1))
    filled = np.flatnonzero(ready)
    return (int(filled[0]) if len(filled) else 0), len(ready)


def _meta(trace, key, default):
    return (trace.meta if isinstance(trace.meta, dict) else {}).get(key, default)


def supervision_delay(trace):
    """d_y the engine ran with (or an integer the scene gave), else read off the
    output layer's tags."""
    given = [_meta(trace, "resolved", {}).get("supervision_delay"),
             _meta(trace, "scene", {}).get("rule", {}).get("supervision_delay")]
    for d_y in given:
        if isinstance(d_y, int) and not isinstance(d_y, bool):
            return d_y
    sup = trace["tag_supervision"][:, -1]
    t = trace["tick"]
    known = sup >= 0
    return int(t[known][-1] - sup[known][-1]) if known.any() else 0


def _tag(value):
    return int(value) if value >= 0 else None


def finite_mean(values):
    """Mean of the finite values as a float; None when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _rows(trace, window):
    L, ls = trace.depth, synchronized_layers(trace.depth)[0]
    last = len(trace["tick"]) - 1
    start, stop = window
    rows = []
    for l in range(1, L + 1):
        x_tag, lo, hi, sup, out = (_tag(trace["tag_" + k][last, l]) for k in
                                   ("pair", "sigma_lo", "sigma_hi", "supervision", "output"))
        rows.append({"layer": l, "forward_steps": l - 1, "backward_steps": L - l,
                     "lag": (l - 1) - (L - l), "input_tag": x_tag,
                     "age": None if x_tag is None else int(trace["tick"][last]) - x_tag,
                     "supervision_tag": sup, "output_tag": out, "sigma_tags": [lo, hi],
                     "supervision_in_sync": None if None in (sup, x_tag) else sup == x_tag,
                     "output_in_sync": None if None in (out, x_tag) else out == x_tag,
                     "sigma_in_sync": None if None in (lo, x_tag) else (lo == hi == x_tag),
                     "mean_cos": finite_mean(trace["mismatch_cos"][start:stop, l - 1]),
                     "mean_rel": finite_mean(trace["mismatch_rel"][start:stop, l - 1]),
                     "synchronized": L % 2 == 1 and l == ls})
    return rows


def _tau_rule(depth, stream):
    tau = depth - 1
    text = (f"τs = (L−1)Δt = {tau} ticks: synchronization approximately holds where the input "
            f"is nearly constant over {tau} ticks (frames held h ≥ {tau}).")
    if stream.get("kind") == "constant":
        text += " This run's input is constant: every layer settles on backprop's gradient."
    elif stream.get("kind") in ("held", "dataset"):
        hold = int(stream.get("hold", 1))
        verdict = "at or above" if hold >= tau else "below"
        unit = "tick" if hold == 1 else "ticks"
        text += f" This run holds each frame {hold} {unit}, {verdict} τs."
    return text


def sync_report(trace):
    """Per-layer synchronization as a JSON-serializable dict {name, rows, summary}
    (``graph_sync_report`` for a graph trace): per layer 1..L steps, last tags, which
    factors of δ share the paired input's frame, mean mismatch over the steady window."""
    if "vertex_names" in trace:
        return graph_sync_report(trace)
    L = trace.depth
    window = steady_window(trace)
    rows = _rows(trace, window)
    layers = synchronized_layers(L)
    exact = L % 2 == 1
    summary = {"depth": L, "supervision_delay": supervision_delay(trace),
               "ls": layers[0] if exact else None, "closest": list(layers), "exact": exact,
               "matched_layers": [r["layer"] for r in rows if r["supervision_in_sync"]],
               "delay": gradient_delay(L), "tau_s": L - 1,
               "tau_rule": _tau_rule(L, _meta(trace, "scene", {}).get("stream", {})),
               "steady_window": list(window), "ticks": int(len(trace["tick"])),
               "last_tick": int(trace["tick"][-1])}
    summary["text"] = _summary_lines(summary, rows)
    return {"name": _meta(trace, "name", ""), "rows": rows, "summary": summary}


def _summary_lines(s, rows):
    L = s["depth"]
    lines = []
    if s["exact"]:
        ls = s["ls"]
        so = ("which synchronizes input and supervision when d_y = 0 (Eq. 6)."
              if s["supervision_delay"] else
              "so input and supervision belong to the same frame (Eq. 6).")
        lines.append(f"ls = (L+1)/2 = {ls}: forward steps {ls - 1} = backward steps {L - ls}, {so}")
        row = rows[ls - 1]
        parts = [f"output activity {_WORD[row['output_in_sync']]}",
                 f"σ' factors {_WORD[row['sigma_in_sync']]}"]
        lines.append(f"At ls the other components of δ: {', '.join(parts)} with the input's frame.")
        if s["supervision_delay"] == 0:
            lines.append(f"Gradient delay (L−1)/2 = {s['delay']} ticks: frame s is formed at ls at "
                         f"tick s + {s['delay']}.")
        else:
            lines.append(f"The paper's gradient delay (L−1)/2 = {s['delay']} ticks assumes "
                         "d_y = 0; the age column gives each layer's delay in this run.")
    else:
        a, b = s["closest"]
        lines.append(f"L = {L} is even: no layer is exactly synchronized; layers {a} and {b} are "
                     "closest (off by one tick).")
        lines.append(f"Gradient delay (L−1)/2 = {s['delay']} ticks, met by no layer exactly.")
    if s["supervision_delay"]:
        where = ", ".join(map(str, s["matched_layers"])) or "none"
        lines.append(f"Supervision delay d_y = {s['supervision_delay']} shifts the match: "
                     f"tags agree at layer(s) {where}.")
    lines.append(s["tau_rule"])
    start, stop = s["steady_window"]
    lines.append(f"Mean mismatch over ticks {start}–{stop - 1} (network filled).")
    return lines


_WORD = {True: "in sync", False: "NOT in sync", None: "unknown (empty)"}
_CELL = {True: "yes", False: "no", None: "-"}


def _num(value, fmt):
    return "-" if value is None else format(value, fmt)


def graph_sync_report(trace):
    """``sync_report`` of a graph run (facts C′/D′): per vertex 1..n−1
    kind, levels, sync-set membership, last frames (oldest–newest) and mean mismatch."""
    window = steady_window(trace)
    start, stop = window
    last = len(trace["tick"]) - 1
    names = [str(n) for n in trace["vertex_names"]]

    def tags(key, v):
        lo, hi = _tag(trace["tag_" + key][last, v]), f"tag_{key}_hi"
        return [lo, _tag(trace[hi][last, v]) if hi in trace else lo]
    rows = [{"vertex": names[v], "index": v, "kind": str(trace["vertex_kinds"][v]),
             "forward": int(trace["vertex_levels"][v]), "backward": int(trace["vertex_bwd"][v]),
             "synchronized": bool(trace["vertex_sync"][v]),
             "input_tags": tags("input", v), "pair_tags": tags("pair", v),
             "supervision_tag": _tag(trace["tag_supervision"][last, v]),
             "mean_cos": finite_mean(trace["mismatch_cos"][start:stop, v - 1]),
             "mean_rel": finite_mean(trace["mismatch_rel"][start:stop, v - 1])}
            for v in range(1, len(names))]
    synced = [r["vertex"] for r in rows if r["synchronized"]]
    mixed = [r["vertex"] for r in rows if None not in r["input_tags"]
             and r["input_tags"][0] != r["input_tags"][1]]
    network = _meta(trace, "scene", {}).get("network", {})
    summary = {"graph": True, "depth": int(trace["vertex_levels"][-1]),
               "levelled": bool(network.get("levelled", False)),
               "sync_set": synced, "mixed_frames": mixed,
               "supervision_delay": supervision_delay(trace), "steady_window": list(window),
               "ticks": int(len(trace["tick"])), "last_tick": int(trace["tick"][-1])}
    lines = [f"Synchronization set (the x that g pairs with took as many forward steps as δ "
             f"took backward, fwd − 1 = bwd, on every path): "
             f"{', '.join(synced) or 'empty'}; with linear layers and the linear loss, g there "
             "is backprop's gradient of one frame exactly, on any stream (facts C′/D′)."]
    if mixed:
        lines.append(f"Vertices mixing frames at tick {summary['last_tick']} (paths of different "
                     f"lengths reach them): {', '.join(mixed)}; network.levelled = true inserts "
                     "identity vertices so each carries one frame.")
    lines.append(f"Mean mismatch over ticks {start}–{stop - 1} (graph filled).")
    summary["text"] = lines
    return {"name": _meta(trace, "name", ""), "rows": rows, "summary": summary}


def _frames(pair):
    lo, hi = pair
    return "-" if lo is None else (str(lo) if lo == hi else f"{lo}–{hi}")


def format_graph_sync(report):
    """A graph sync report as a printable table plus its summary lines."""
    header = ("vertex", "kind", "fwd", "bwd", "sync", "x frames", "paired x", "y tag", "cos",
              "rel err")
    table = [header] + [
        (r["vertex"], r["kind"], str(r["forward"]), str(r["backward"]),
         "yes" if r["synchronized"] else "", _frames(r["input_tags"]), _frames(r["pair_tags"]),
         _num(r["supervision_tag"], "d"), _num(r["mean_cos"], ".4f"), _num(r["mean_rel"], ".3g"))
        for r in report["rows"]]
    s = report["summary"]
    return _print_table(
        f"{report.get('name') or 'run'}: graph of depth D = {s['depth']}"
        f"{' (levelled)' if s['levelled'] else ''}, supervision delay d_y = "
        f"{s['supervision_delay']}, tags at tick {s['last_tick']}", table,
        "fwd/bwd: longest path from the input / to the output; sync: in the "
        "synchronization set; x frames / paired x: frames (oldest–newest) of the vertex's "
        "x and of the x its g pairs with; y tag: frame of δ's target; cos, rel err: mean "
        "mismatch of g_W against backprop.", s["text"])


def _print_table(title, table, legend, notes):
    """Title, the right-aligned table with a rule under its header, legend, notes."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [title]
    for k, row in enumerate(table):
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join([*lines, legend, *notes])


def format_sync(report):
    """The sync report as a printable table plus its summary lines."""
    s = report["summary"]
    if s.get("graph"):
        return format_graph_sync(report)
    header = ("layer", "fwd", "bwd", "lag", "x tag", "y tag", "age", "out", "σ'", "cos",
              "rel err", "note")
    table = [header] + [
        (str(r["layer"]), str(r["forward_steps"]), str(r["backward_steps"]), f"{r['lag']:+d}",
         _num(r["input_tag"], "d"), _num(r["supervision_tag"], "d"), _num(r["age"], "d"),
         _CELL[r["output_in_sync"]], _CELL[r["sigma_in_sync"]], _num(r["mean_cos"], ".4f"),
         _num(r["mean_rel"], ".3g"), "<- ls" if r["synchronized"] else
         "<- closest" if not s["exact"] and r["layer"] in s["closest"] else "")
        for r in report["rows"]]
    return _print_table(
        f"{report.get('name') or 'run'}: depth L = {s['depth']}, supervision delay d_y = "
        f"{s['supervision_delay']}, tags at tick {s['last_tick']}", table,
        "fwd/bwd: forward steps l−1 / backward steps L−l; lag = fwd − bwd; x tag / y tag: "
        "frame of the paired input / of δ's target; age: ticks since the x tag's frame "
        "entered; out, σ': that component of δ belongs to the x tag's frame; cos, rel err: "
        "mean mismatch against backprop.", s["text"])
