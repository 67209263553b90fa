"""`gatewayctl` as a subprocess, for tests that drive the operator's own commands."""

from __future__ import annotations

import asyncio
import subprocess
import sys

CLI = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"gatewayctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


async def arun(*args: str) -> tuple[int, str]:
    """The CLI without blocking the event loop a gateway under test runs in."""
    process = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode, out.decode()
