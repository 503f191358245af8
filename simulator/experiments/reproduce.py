"""``tickprop reproduce``: published numbers re-measured as checks, with the evidence
(results.json, results.md) written atomically to one output folder.

The contract every check keeps (CHECKS: name → function):

    check(tier: str, data: str | None, seed: int, progress) -> dict with keys
      name, claim (one sentence), source (citation: authors, title, arXiv id/table),
      published (str: the published number/statement), ours (str: our measured number),
      passed (bool), seeds (list of ints), settings (dict), cpu_s (float)

tier "offline" runs on 2 CPU cores without any dataset download (the bundled digits of
simulator.datasets; whatever is installed); tier "data" is the opt-in tier, ``data`` the
path of a local dataset (None in the offline tier). ``seed`` is the first seed; a check
that runs several says which in ``seeds``. ``progress(fraction)`` takes how much of the
check is done, 0..1 (calls are optional; values only ever move the bar forward).
Every registered check runs in either tier; one that needs no dataset ignores ``data``
and says so in its settings. Another module joins by adding its CHECKS to SOURCES.
"""
import datetime
import os

from .. import outputs
from ..errors import SimulatorError
from ..files import write_json, write_text
from ..runner import run_metadata
from . import reproduce_exact, reproduce_learning

SOURCES = (reproduce_exact.CHECKS, reproduce_learning.CHECKS)
CHECKS = {name: check for source in SOURCES for name, check in source.items()}
TIERS = ("offline", "data")
KEYS = {"name": str, "claim": str, "source": str, "published": str, "ours": str,
        "passed": bool, "seeds": list, "settings": dict, "cpu_s": float}
STEPS = 100             # progress units per check
# Checks that do not reproduce their published number here, with why. They run and
# print "FAIL (known)" but do not fail the command; one that passes says so.
KNOWN_FAILURES = {}


def plan(tier, data=None, only=()):
    """The check names to run (registry order; ``only`` names, commas allowed), after
    checking the request; a mistake is one SimulatorError."""
    if tier not in TIERS:
        raise SimulatorError(f"--tier {tier!r}: expected one of {', '.join(TIERS)}")
    if tier == "offline" and data is not None:
        raise SimulatorError("--data is read by the data tier only; add --tier data")
    if tier == "data":
        if data is None:
            raise SimulatorError("--tier data needs --data PATH (a local dataset)")
        if not os.path.exists(data):
            raise SimulatorError(f"--data {data}: no such file or folder")
    wanted = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in CHECKS]
    if unknown:
        raise SimulatorError(f"--only {', '.join(unknown)}: no such check; expected any of "
                             f"{', '.join(CHECKS)}")
    if only and not wanted:
        raise SimulatorError("--only: expected a check name")
    return [n for n in CHECKS if not wanted or n in wanted]


def run_checks(names, tier, data=None, seed=0, progress=None):
    """Each named check's result dict, in order; ``progress(n)`` gets units done
    (STEPS per check). A result breaking the contract is a bug (TypeError)."""
    step = progress or (lambda n: None)
    results = []
    for name in names:
        shown = [0]

        def advance(fraction, shown=shown):
            units = int(STEPS * min(max(float(fraction), 0.0), 1.0))
            if units > shown[0]:
                step(units - shown[0])
                shown[0] = units
        result = CHECKS[name](tier, data, seed, advance)
        advance(1.0)
        results.append(_checked(name, result))
    return results


def _checked(name, result):
    if not isinstance(result, dict):
        raise TypeError(f"check {name} returned {type(result).__name__}, not a dict")
    missing = [k for k in KEYS if k not in result]
    wrong = [k for k, t in KEYS.items() if k in result and not (
        isinstance(result[k], t) or (t is float and isinstance(result[k], int)))]
    if missing or wrong or result["name"] != name:
        raise TypeError(f"check {name} broke the contract: missing {missing}, wrong type "
                        f"{wrong}, name {result.get('name')!r}")
    return dict(result, passed=bool(result["passed"]), cpu_s=float(result["cpu_s"]))


def environment(tier, data, seed):
    """Versions, machine, date (UTC) and the request, for results.json."""
    meta = run_metadata("reproduce", {})
    return {"tickprop": meta["versions"]["tickprop"], "versions": meta["versions"],
            "platform": meta["machine"], "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tier": tier, "data": data, "seed": seed}


def verdict(result):
    if result["name"] in KNOWN_FAILURES:
        return "FAIL (known)" if not result["passed"] else "PASS (listed as a known failure)"
    return "PASS" if result["passed"] else "FAIL"


def unexpected(results):
    """The results that fail the command: failures not in KNOWN_FAILURES."""
    return [r for r in results if not r["passed"] and r["name"] not in KNOWN_FAILURES]


def table_lines(results):
    """One line per check: name  published  ours  PASS|FAIL (columns aligned)."""
    rows = [(r["name"], r["published"], r["ours"], verdict(r)) for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3]
            for row in rows]


def headline(results, env):
    passed = sum(r["passed"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    known = [r["name"] for r in results if not r["passed"] and r["name"] in KNOWN_FAILURES]
    return (f"{passed} of {len(results)} checks passed"
            + (f", {len(known)} known failure ({', '.join(known)})" if known else "")
            + f" ({env['tier']} tier, seed {env['seed']}, {cpu:.1f} CPU-s)")


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results, env):
    """results.md: the table (check, published, ours, seeds, result), then each
    check's claim and source."""
    lines = ["# tickprop reproduce", "",
             f"{headline(results, env)}. tickprop {env['tickprop']}, numpy "
             f"{env['versions']['numpy']}, Python {env['versions']['python']}, "
             f"{env['platform']}, {env['date']}.", "",
             "| check | published | ours | seeds | result |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {_cell(r['published'])} | {_cell(r['ours'])} | "
              f"{', '.join(map(str, r['seeds']))} | {verdict(r)} |" for r in results]
    lines.append("")
    for r in results:
        why = f" Known failure: {KNOWN_FAILURES[r['name']]}." if r["name"] in KNOWN_FAILURES else ""
        lines += [f"**{r['name']}**: {r['claim']} Source: {r['source']}. "
                  f"{r['cpu_s']:.2f} CPU-s.{why}", ""]
    return "\n".join(lines)


def reproduce(out, tier="offline", data=None, only=(), seed=0, force=False, progress=None):
    """Run the checks (``progress``: STEPS units per check of ``plan``) and write the
    evidence folder ``out`` atomically (nothing is left if a check raises); returns
    (results, environment)."""
    names = plan(tier, data, only)
    outputs.check_out(out, force)                   # before any work
    env = environment(tier, data, seed)
    holder = {}

    def fill(folder):
        results = run_checks(names, tier, data, seed, progress)
        evidence = dict(env, passed=all(r["passed"] for r in results), checks=results,
                        known_failures={r["name"]: KNOWN_FAILURES[r["name"]] for r in results
                                        if r["name"] in KNOWN_FAILURES})
        write_json(os.path.join(folder, "results.json"), evidence)
        write_text(os.path.join(folder, "results.md"), markdown(results, env))
        holder["results"] = results
        return {"kind": "reproduce", "name": "reproduce", "versions": env["versions"],
                "machine": env["platform"], "summary": {"headline": headline(results, env)}}
    outputs.write_folder(out, fill, force)
    return holder["results"], env
