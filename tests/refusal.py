"""What every refusal prints: one `error: ...` line on stderr and no traceback anywhere."""


def error_line(stdout: str, stderr: str) -> str:
    """The refusal's one line (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stdout + stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]
