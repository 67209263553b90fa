"""Where everything lives inside a gateway home directory.

One place names every path so the CLI, the running gateway and the tests agree. Files that
hold secrets are created owner-only (0600) and the gateway refuses to start when they are not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SECRET_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> "Home":
        return cls(Path(path).expanduser().resolve())

    # identity and settings
    @property
    def config(self) -> Path:
        return self.root / "gateway.json"

    # secrets
    @property
    def master_key(self) -> Path:
        return self.root / "master.key"

    @property
    def keystore(self) -> Path:
        return self.root / "keystore.json"

    @property
    def clients(self) -> Path:
        return self.root / "clients.json"

    @property
    def operator_token(self) -> Path:
        return self.root / "operator.token"

    # policy
    @property
    def trust(self) -> Path:
        return self.root / "trust.json"

    @property
    def signing_dir(self) -> Path:
        return self.root / "signing"

    @property
    def policy_dir(self) -> Path:
        return self.root / "policy"

    @property
    def active_policy(self) -> Path:
        return self.policy_dir / "active.yaml"

    @property
    def policy_history(self) -> Path:
        return self.policy_dir / "history"

    # audit
    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def audit_log(self) -> Path:
        return self.audit_dir / "audit.log"

    @property
    def audit_checkpoints(self) -> Path:
        return self.audit_dir / "checkpoints.jsonl"

    @property
    def audit_signing_key(self) -> Path:
        return self.audit_dir / "checkpoint.key"

    # control
    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def breakers(self) -> Path:
        """Each loss period's starting equity (day, week, month)."""
        return self.root / "breakers.json"

    @property
    def operator_socket(self) -> Path:
        return self.root / "operator.sock"

    @property
    def secret_files(self) -> tuple[Path, ...]:
        """Files that must never be readable by group or others."""
        return (
            self.master_key,
            self.keystore,
            self.clients,
            self.operator_token,
            self.audit_signing_key,
            *sorted(self.signing_dir.glob("*.key")),
        )


def write_private(path: Path, data: bytes) -> None:
    """Atomically write ``data`` as an owner-only file (temp file, fsync, rename, fsync dir)."""
    _atomic_write(path, data, SECRET_FILE_MODE)


def write_public(path: Path, data: bytes) -> None:
    """Atomically write a non-secret file (0644)."""
    _atomic_write(path, data, 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def loose_permissions(home: Home) -> list[str]:
    """Problems that let another local user read a secret or change what the gateway trusts:
    secret files readable by group/others, the home or its integrity files (trust, policy,
    state, config, audit) writable by group/others, or owned by another user."""
    problems = []
    uid = os.geteuid()
    st = home.root.stat()
    if st.st_uid != uid:
        problems.append(f"{home.root} is owned by uid {st.st_uid}, not by the gateway's user ({uid})")
    if st.st_mode & 0o077:
        problems.append(f"{home.root} has mode {st.st_mode & 0o777:o}; it must be 700 (chmod 700 {home.root})")
    for path in (home.config, home.trust, home.state, home.breakers, home.policy_dir, home.active_policy,
                 home.audit_dir, home.audit_log):
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o022:
                problems.append(f"{path} is writable by others (mode {mode:o}); chmod go-w {path}")
    for path in home.secret_files:
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                problems.append(f"{path} has mode {mode:o}; it must be 600 (chmod 600 {path})")
    return problems
