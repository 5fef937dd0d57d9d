"""The one closed-pipe rule: output into a pipe nobody reads is not an error."""

from __future__ import annotations

import subprocess
import sys

WRITER = """
import sys
from kpictl.cli import output
with output.tolerate_closed_pipe():
    for _ in range(2000):
        output.echo("x" * 1000)
output.echo("after the reader left")
sys.stderr.write("done\\n")
"""


def test_writing_into_a_closed_pipe_ends_quietly():
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    writer.stdout.close()  # like `| head -0`
    _, stderr = writer.communicate(timeout=60)
    assert (writer.returncode, stderr) == (0, b"done\n")
