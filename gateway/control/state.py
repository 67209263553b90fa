"""The trading state (ACTIVE, REDUCE_ONLY, LOCKED), persisted in the gateway home.

The file is the source of truth so that ``gatewayctl lockdown`` works whether or not the
gateway is running: the CLI writes it, and the running gateway sees the change on its next
order (one ``stat`` per read, no polling thread). A missing or unreadable state file reads
as LOCKED: the gateway fails closed and an operator must unlock.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from ..home import write_public
from ..model import TradingState, utcnow


@dataclass(frozen=True, slots=True)
class StateRecord:
    state: TradingState
    reason: str
    since: datetime
    actor: str

    def to_json(self) -> dict:
        return {"state": self.state.value, "reason": self.reason, "since": self.since.isoformat(), "actor": self.actor}


class TradingControl:
    """Reads and changes the persisted trading state; cheap enough to call on every order."""

    def __init__(self, path: Path):
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._pinned: StateRecord | None = None
        self._current = self._read()

    @property
    def current(self) -> StateRecord:
        """The state now, re-read only when the file changed since the last look."""
        if self._pinned is not None:
            return self._pinned
        signature = self._stat()
        if signature != self._signature:
            self._current = self._read()
        return self._current

    @property
    def state(self) -> TradingState:
        return self.current.state

    def set(self, state: TradingState, reason: str, actor: str) -> tuple[StateRecord, StateRecord]:
        """Persist a new state; returns (previous, new). Serialised across processes."""
        if not reason.strip():
            raise ValueError("a reason is required")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            previous = self._read()
            record = StateRecord(state, reason.strip(), utcnow(), actor)
            write_public(self.path, orjson.dumps(record.to_json(), option=orjson.OPT_INDENT_2))
            self._signature = None
            self._current = self._read()
        return previous, record

    def pin(self, state: TradingState, reason: str) -> StateRecord:
        """Force a state in this process until restart, whatever the file says; used when the
        file itself may be unwritable (the audit disk failed). Also tries to persist it."""
        self._pinned = StateRecord(state, reason, utcnow(), "gateway")
        try:
            self.set(state, reason, "gateway")
        except OSError:
            pass
        return self._pinned

    def initialise(self) -> StateRecord:
        """A new home starts ACTIVE (called by `gatewayctl init` only)."""
        return self.set(TradingState.ACTIVE, "gateway home created", "init")[1]

    # -- internals -------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:  # missing, or a path through a file: read (as LOCKED) every time
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> StateRecord:
        self._signature = self._stat()
        try:
            raw = orjson.loads(self.path.read_bytes())
            return StateRecord(
                TradingState(raw["state"]),
                str(raw["reason"]),
                datetime.fromisoformat(raw["since"]),
                str(raw.get("actor", "")),
            )
        except FileNotFoundError:
            return StateRecord(TradingState.LOCKED, f"state file {self.path.name} is missing", utcnow(), "gateway")
        except OSError as exc:  # a directory, a path through a file, no permission: fail closed
            why = type(exc).__name__
            return StateRecord(TradingState.LOCKED, f"state file {self.path.name} cannot be read ({why})", utcnow(), "gateway")
        except (ValueError, KeyError, TypeError):
            return StateRecord(TradingState.LOCKED, f"state file {self.path.name} is unreadable", utcnow(), "gateway")
