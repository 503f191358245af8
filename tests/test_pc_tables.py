"""Tables 1 and 2: the paper's claims as measured facts (divergence is
rounding once levelled, clearly not without levelling on skip-connected
graphs), plus the table formats. No timing assertions."""
import csv
import os

import pytest

from simulator.experiments.pc.builders import ARCHITECTURES
from simulator.experiments.pc.tables import format_markdown, table1, table2, write_csv

SKIPPY = {"residual", "attention"}


def by_name(rows):
    return {r["architecture"]: r for r in rows}


def test_table1_levelled_float64_is_rounding_on_all_five():
    rows = by_name(table1("float64", levelled=True))
    assert set(rows) == set(ARCHITECTURES)
    for row in rows.values():
        assert row["divergence_rel"] <= 1e-12, row


def test_table1_unlevelled_fails_only_on_skip_connections():
    rows = by_name(table1("float64", levelled=False))
    for name, row in rows.items():
        if name in SKIPPY:
            assert not row["was_levelled"] and row["divergence_rel"] > 1e-2, row
        else:
            assert row["divergence_rel"] <= 1e-12, row
            assert row["identities"] == 0


def test_table1_float32_is_float32_rounding_when_levelled():
    rows = by_name(table1("float32", levelled=True))
    for row in rows.values():
        assert 0 < row["divergence_rel"] < 1e-5, row


def test_table2_rows_carry_times_and_ratios():
    tiny = {"mlp": dict(sizes=(4, 5, 3)), "cnn": dict(image=5, channels=(1, 2)),
            "rnn": dict(steps=2), "residual": dict(blocks=1), "attention": dict(tokens=2)}
    rows = table2(T=3, repeats=1, sizes=tiny)
    assert [r["architecture"] for r in rows] == list(ARCHITECTURES)
    for r in rows:
        assert r["T"] == 3
        for m in ("bp", "zil", "zil_alg2", "zil_full", "il"):
            assert r[f"{m}_ms"] > 0
        assert r["il_over_bp"] == pytest.approx(r["il_ms"] / r["bp_ms"])


def test_markdown_and_csv(tmp_path):
    rows = [{"architecture": "mlp", "divergence_rel": 1.25e-16, "levelled": True},
            {"architecture": "cnn", "divergence_rel": 3.0, "levelled": False}]
    md = format_markdown(rows).splitlines()
    assert md[0] == "| architecture | divergence_rel | levelled |"
    assert md[2] == "| mlp | 1.25e-16 | True |"
    assert len(md) == 4
    path = tmp_path / "t1.csv"
    write_csv(rows, path)
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert back[1] == {"architecture": "cnn", "divergence_rel": "3.0", "levelled": "False"}
    assert os.listdir(tmp_path) == ["t1.csv"]  # no temporary file left behind
