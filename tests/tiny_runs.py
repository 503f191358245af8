"""Tiny saved runs of every kind whose files `tickprop render` and `tickprop
view` read: the CLI arguments that make each in about a second (pictures are
chosen by the caller). Shared by the damaged-folder tests and their fuzz."""

TINY_RUNS = {
    "diffusion": ["fig3_fast", "--ticks", "12"],
    "graph": ["residual_levelling", "--ticks", "6", "--set", "record.states=true"],
    "ar_converge": ["ar_converge", "--set", "relaxation.iterations=3",
                    "--set", "relaxation.batch=4", "--set", "relaxation.eta_x=[0.1, 0.5]",
                    "--set", "network.sizes=[64, 6, 10]"],
    "pc_wave": ["pc_wave"],
    "train": ["train_digits", "--ticks", "8", "--set", "train.eval_every=4",
              "--set", "train.eval_size=8"],
    "ar_train": ["ar_train", "--set", "network.sizes=[64, 6, 10]",
                 "--set", "relaxation.iterations=2", "--set", 'relaxation.variants=["exact"]',
                 "--set", "train.epochs=1", "--set", "train.seeds=[0]",
                 "--set", "train.batch=512"],
    "locking": ["locking", "--set", "locking.depth=3", "--set", "locking.frames=2"],
}


def make_tiny_runs(base, kinds, pictures):
    """{kind: folder} of one tiny run per kind in ``kinds`` under ``base``,
    through the CLI (GIFs off; PNGs as ``pictures`` says)."""
    from click.testing import CliRunner

    from simulator.command import main as tickprop
    made = {}
    for kind in kinds:
        out = str(base / kind)
        flags = ["--quiet", "--no-gif"] + ([] if pictures else ["--no-png"])
        res = CliRunner().invoke(tickprop, ["run", *TINY_RUNS[kind], "--out", out, *flags])
        assert res.exit_code == 0, (kind, res.output[-3000:])
        made[kind] = out
    return made
