"""Re-record the golden entries of the named scenes only, and show which entries
of scenes.json differ from git's HEAD (the others must be byte-identical).

``python tests/golden/rerecord.py NAME ...`` records NAME's entries into
scenes.json; ``python tests/golden/rerecord.py --diff`` lists changed entries."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenes  # noqa: E402


def entries(text):
    """{scene: its entry as canonical JSON text}."""
    return {k: json.dumps(v, indent=1, sort_keys=True) for k, v in json.loads(text).items()}


def diff():
    head = subprocess.run(["git", "show", "HEAD:tests/golden/scenes.json"], cwd=HERE,
                          capture_output=True, text=True, check=True).stdout
    with open(scenes.PATH) as f:
        old, new = entries(head), entries(f.read())
    for name in sorted(set(old) | set(new)):
        state = ("added" if name not in old else "removed" if name not in new
                 else "changed" if old[name] != new[name] else "byte-identical")
        print(f"{name}: {state}")


def rerecord(names):
    with open(scenes.PATH) as f:
        golden = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            meta, prints = scenes.run_short(name, os.path.join(tmp, name))
            golden[name] = {"run.json": meta, "fingerprints": prints}
    with open(scenes.PATH, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--diff"]:
        diff()
    else:
        rerecord(sys.argv[1:])
