"""The `influcoder` console script: `main` behind an import guard.

Importing the CLI (tyro, the command modules) takes about a second and a half; a Ctrl-C in that time used to
print a KeyboardInterrupt traceback and exit -2. This module imports nothing heavy itself, so the interrupt
lands here and ends as every other interrupt does: one line, exit 130.
"""

from __future__ import annotations

import sys


def run() -> int:
    try:
        from influcoder.cli.main import main
    except KeyboardInterrupt:
        print("influcoder: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130
    return main()
