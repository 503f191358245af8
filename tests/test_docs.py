"""The newcomer's documents: README length and its test command (the one CI runs),
CITATION.cff, relative links of README and docs/ pointing at files that exist, no
pointer into documents outside the repository, and the generated reference pages
covering every scene key and trace array (docs/hooks/reference.py)."""
import glob
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _pages():
    pages = ["README.md"] + [os.path.relpath(p, ROOT) for p in
                             glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)]
    return sorted(pages)


def _hook():
    spec = importlib.util.spec_from_file_location(
        "docs_reference_hook", os.path.join(ROOT, "docs", "hooks", "reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_its_test_command_is_what_ci_runs():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= 200
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    test_command = block.strip().splitlines()[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in _read(".ci", "run").splitlines()]
    assert test_command in ci_lines


def test_citation_cff_parses_and_names_the_implemented_works():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load(_read("CITATION.cff"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    ids = {i["value"] for ref in cff["references"] for i in ref.get("identifiers", [])}
    assert ids == {"arXiv:1912.04635", "arXiv:2009.05359", "arXiv:2103.04689", "arXiv:1907.07255"}
    assert "MIT License" in _read("LICENSE")


@pytest.mark.parametrize("page", _pages())
def test_relative_links_point_at_files_that_exist(page):
    here = os.path.dirname(os.path.join(ROOT, page))
    missing = []
    for target in LINK.findall(_read(page)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(here, target.split("#")[0]))
        if not os.path.exists(path) and not path.endswith(
                os.path.join("reference", "scene-keys.md")) and not path.endswith(
                os.path.join("reference", "trace.md")):
            missing.append(target)
    assert missing == [], f"{page}: links to missing files"


@pytest.mark.parametrize("page", _pages())
def test_no_pointer_into_documents_outside_the_repository(page):
    text = _read(page)
    assert not re.search(r"paper 00\d|SPEC\b", text), page


def test_generated_reference_covers_every_scene_key_and_trace_array():
    from simulator.probes.trace import SCHEMA
    from simulator.scene.sections import SCHEMAS
    hook = _hook()
    keys_page, trace_page = hook.scene_keys_page(), hook.trace_page()
    for kind, sections in SCHEMAS.items():
        for section, fields in sections.items():
            table = keys_page.split(f"### `[{section}]` ({kind})\n", 1)[1].split("\n###", 1)[0]
            rows = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
            assert rows == list(fields), (kind, section)
    assert re.findall(r"^\| `([a-z_]+)` \|", trace_page, re.M) == list(SCHEMA)
    assert not re.search(r"paper 00\d|SPEC\b", keys_page + trace_page)
    from simulator.model.spec import FIELDS
    for kind, fields in FIELDS.items():
        table = keys_page.split(f"### `{kind}`\n", 1)[1].split("\n###", 1)[0]
        assert re.findall(r"^\| `([a-z_]+)` \|", table, re.M) == list(fields), kind
