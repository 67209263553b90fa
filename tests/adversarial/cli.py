"""`gatewayctl` as an operator runs it. ``run`` calls the CLI's own entry point in this process
(same parsing, same code, without a new interpreter per command); ``arun`` starts a real
subprocess, for tests whose gateway runs on this process's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys

from gateway.cli import main

CLI = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 1
    result = subprocess.CompletedProcess(["gatewayctl", *args], code, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"gatewayctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


async def arun(*args: str) -> tuple[int, str]:
    """The CLI without blocking the event loop a gateway under test runs in."""
    process = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode, out.decode()
