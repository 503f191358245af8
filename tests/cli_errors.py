"""The one check every command-line mistake test makes: exit code 2 and exactly one
`error:` line on stderr (engineering rule 6), returning that line."""


def one_error_line(res):
    """The single `error: ...` line of a click ``res`` that exited with code 2."""
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]
