"""`gatewayctl init`: a complete, safe gateway home in one non-interactive step.

Creates the master key, the encrypted keystore, an operator token, two policy-signing key pairs
meant for two different people and the trust file that names both (one signature applies a
policy that only tightens; loosening needs both, and so does adding a signer), the default policy bound to this gateway and signed, the
trading state (ACTIVE), the audit log with its first record, and one bot credential.
Refuses to touch a directory that already has anything in it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from .audit.checkpoint import load_or_create_checkpoint_key
from .audit.log import append_sync, checkpoint_sync
from .control.state import TradingControl
from .home import PRIVATE_DIR_MODE, Home, write_private, write_public
from .keys.clients import BotCredentials
from .keys.master import ENV_VAR as MASTER_KEY_ENV
from .keys.master import create_master_key
from .keys.vault import Vault
from .model import utcnow
from .policy.signing import generate_keypair, read_sig_file, sign_file
from .policy.store import PolicyStore
from .policy.trust import Trust

SIGNER_KEY_NAME = "policy-signer.key"
SECOND_SIGNER_KEY_NAME = "policy-signer-2.key"


class InitError(Exception):
    pass


@dataclass(frozen=True)
class InitResult:
    home: Path
    gateway_id: str
    bot_key_id: str
    bot_secret: str
    signer_key: Path
    signer_key_id: str
    second_signer_key: Path
    second_signer_key_id: str
    policy: Path
    operator_token: Path

    def to_json(self) -> dict:
        return {
            "home": str(self.home),
            "gateway_id": self.gateway_id,
            "bot_key_id": self.bot_key_id,
            "bot_secret": self.bot_secret,
            "signer_key": str(self.signer_key),
            "signer_key_id": self.signer_key_id,
            "second_signer_key": str(self.second_signer_key),
            "second_signer_key_id": self.second_signer_key_id,
            "policy": str(self.policy),
            "operator_token": str(self.operator_token),
        }


def default_policy_text() -> str:
    """The shipped default policy (policies/default.yaml, packaged as gateway/default_policy.yaml)."""
    return (Path(__file__).parent / "default_policy.yaml").read_text()


def bind_to_gateway(policy_text: str, gateway_id: str) -> str:
    """The default policy with its placeholder gateway id replaced by this gateway's."""
    lines = policy_text.splitlines(keepends=True)
    out = []
    for line in lines:
        if line.startswith("gateway_id:"):
            line = f'gateway_id: "{gateway_id}"\n'
        out.append(line)
    if out == lines:
        raise InitError("the default policy has no gateway_id line to bind")
    return "".join(out)


def init_home(path: str | os.PathLike, *, policy_text: str | None = None) -> InitResult:
    """A new home. ``policy_text`` replaces the shipped default as the first policy (it is bound
    to this gateway and signed like the default; it must pass every check, ceilings included)."""
    root = Path(path).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise InitError(f"{root} already exists and is not empty; refusing to overwrite a gateway home")
    root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(root, PRIVATE_DIR_MODE)
    home = Home(root)
    gateway_id = f"gw-{secrets.token_hex(6)}"
    write_public(home.config, orjson.dumps({"gateway_id": gateway_id, "created_at": utcnow().isoformat()}, option=orjson.OPT_INDENT_2))

    if os.environ.get(MASTER_KEY_ENV):
        # The operator keeps the master key outside the home; never write a second one beside it.
        vault = Vault.create(home)
    else:
        vault = Vault.create(home, create_master_key(home))
    write_private(home.operator_token, secrets.token_urlsafe(32).encode())

    home.signing_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    signer_key = home.signing_dir / SIGNER_KEY_NAME
    signer_key_id = generate_keypair(signer_key)
    # Four-eyes from the first day: two signers, for two people. One key tightens; loosening a
    # limit or trusting another signer needs both (trust.json: threshold 1, loosen_threshold 2).
    second_signer_key = home.signing_dir / SECOND_SIGNER_KEY_NAME
    second_signer_key_id = generate_keypair(second_signer_key)
    Trust.create(home.trust, [signer_key.with_suffix(".pub"), second_signer_key.with_suffix(".pub")])

    home.policy_dir.mkdir(exist_ok=True)
    draft = home.policy_dir / "initial.yaml"
    draft.write_text(bind_to_gateway(policy_text if policy_text is not None else default_policy_text(), gateway_id))
    sign_file(draft, signer_key)
    store = PolicyStore(home)
    active = store.install_initial(draft.read_bytes(), read_sig_file(draft) or {})

    TradingControl(home.state).initialise()
    home.audit_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    checkpoint_key = load_or_create_checkpoint_key(home.audit_signing_key)
    append_sync(
        home.audit_log,
        "gateway.init",
        {"gateway_id": gateway_id, "policy_version": active.version, "policy_hash": active.sha256, "signer": signer_key_id},
    )

    issued = BotCredentials(home, vault).issue(label="default")
    append_sync(home.audit_log, "key.issue", {"key_id": issued.key_id, "label": "default", "actor": "init"})
    # The first signed checkpoint: from now on a log with records but no checkpoint is tampered.
    checkpoint_sync(home.audit_log, home.audit_checkpoints, checkpoint_key)
    return InitResult(
        home=root,
        gateway_id=gateway_id,
        bot_key_id=issued.key_id,
        bot_secret=issued.secret,
        signer_key=signer_key,
        signer_key_id=signer_key_id,
        second_signer_key=second_signer_key,
        second_signer_key_id=second_signer_key_id,
        policy=home.active_policy,
        operator_token=home.operator_token,
    )
