"""The installed policy: verifying, checking candidates, and switching atomically.

Public API
----------
``PolicyStore(home: Home, *, now=utcnow)``
    ``load_active() -> ActivePolicy``
        The installed policy (``policy/active.yaml`` + ``.sig``), verified: at least the trust
        file's ``threshold`` of distinct trusted signers, valid, meant for this gateway, not
        expired. Raises ``PolicyRefused`` otherwise: the gateway must refuse to start.
    ``check_candidate(data: bytes, sig_doc: dict | None, active: ActivePolicy | None) -> Verdict``
        Pure check of a candidate against the trust file and ``active`` (no install).
        ``active=None`` means there is nothing to compare with (first install): no rollback or
        loosening check.
    ``check_file(path) -> Verdict``
        ``check_candidate`` for ``FILE`` + ``FILE.sig`` against the installed policy
        (``gatewayctl policy verify``).
    ``apply(path) -> ActivePolicy``
        Check, then install atomically; raises ``PolicyRefused`` and leaves the installed files
        untouched when refused. Also ``apply_bytes(data, sig_doc)``.
    ``install_initial(data: bytes, sig_doc: dict) -> ActivePolicy``
        For ``gatewayctl init``: there must be no installed policy yet; needs ``threshold``
        signers. Raises ``FileExistsError`` if a policy is installed.
    ``reload() -> ActivePolicy``
        ``load_active`` for a running gateway: on failure raises and ``.active`` keeps the last
        good policy.
    ``active -> ActivePolicy | None``
        The last policy this store loaded or installed (swapped in one assignment).
``ActivePolicy`` (frozen): ``.policy``, ``.version``, ``.sha256``, ``.signers`` (frozenset of key
    ids), ``.loaded_at``.
``Verdict`` (frozen): ``.ok``, ``.code`` (None when accepted), ``.message``, ``.policy``,
    ``.sha256``, ``.signers``, ``.changes`` (diff against the active policy), ``.raise_if_refused()``.
``PolicyRefused(code, message)``: a ``PolicyError`` with a stable ``.code``.
``read_installed(home) -> (bytes, sig_doc) | None``

Refusal codes, checked in this order
------------------------------------
``unsigned``              no signature file, or no signatures in it
``bytes_changed``         the file's SHA-256 is not the one that was signed
``unknown_signer``        no trusted key among the signers, or a signature that does not verify
                          (one bad signature from a trusted key refuses the whole file)
``insufficient_signers``  fewer distinct trusted signers than the trust file's ``threshold``
                          (only reachable when ``threshold`` > 1)
``invalid_policy``        schema or hard-ceiling error; the parser's message names the field
``wrong_gateway``         ``gateway_id`` is not this gateway's id (``gateway.json``). ``"*"`` is
                          NOT accepted for an installed policy: ``gatewayctl init`` writes the
                          real id, and a policy signed for "any gateway" could be replayed on
                          every gateway the signer trusts
``expired``               ``expires`` is not in the future
``rollback``              ``version`` not strictly above the active one (and above every version
                          in ``policy/history``)
``needs_second_signer``   loosens something relative to the active policy with fewer than
                          ``loosen_threshold`` distinct trusted signers; lists the loosened fields
``load_active`` may also raise ``no_policy`` (nothing installed) and ``trust_unavailable``.

Decisions
---------
* Untrusted keys' signatures are ignored (they neither count nor refuse), unless no trusted key
  signed at all (``unknown_signer``).
* ``apply`` compares against the installed policy even when it has expired, so an expired
  gateway can be given a new policy. If the installed policy cannot be verified at all
  (tampered, missing with history present), there is no trusted baseline and the candidate is
  treated as loosening (needs ``loosen_threshold``); ``apply`` never installs over nothing:
  the first policy goes through ``install_initial``.
* Install order: ``policy/history/v{N}.yaml`` + ``.sig``, then ``active.yaml.sig``, then
  ``active.yaml``, each by atomic rename. If a crash leaves ``active.yaml`` and its ``.sig``
  mismatched, ``load_active`` finds the matching signature document in history.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..home import Home, write_public
from ..model import utcnow
from .diff import FieldChange, describe_change, diff_policies, loosened
from .schema import LoadedPolicy, Policy, PolicyError, parse_policy
from .signing import (
    SignatureError,
    dump_sig_doc,
    examine_signatures,
    read_sig_file,
    sig_path_for,
)
from .trust import Trust, TrustError, home_lock

REFUSAL_CODES = (
    "unsigned",
    "bytes_changed",
    "unknown_signer",
    "insufficient_signers",
    "invalid_policy",
    "wrong_gateway",
    "expired",
    "rollback",
    "needs_second_signer",
)

_HISTORY_NAME = re.compile(r"^v(\d+)\.yaml$")


class PolicyRefused(PolicyError):
    """A policy that may not take effect. ``code`` is stable; ``message`` names the problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ActivePolicy:
    policy: Policy
    sha256: str
    signers: frozenset[str]
    loaded_at: datetime

    @property
    def version(self) -> int:
        return self.policy.version


@dataclass(frozen=True)
class Verdict:
    code: str | None
    message: str
    policy: Policy | None = None
    sha256: str | None = None
    signers: frozenset[str] = frozenset()
    changes: tuple[FieldChange, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.code is None

    def raise_if_refused(self) -> None:
        if self.code is not None:
            raise PolicyRefused(self.code, self.message)


def _refuse(code: str, message: str, **kw: Any) -> Verdict:
    return Verdict(code=code, message=message, **kw)


def read_installed(home: Home) -> tuple[bytes, dict[str, Any] | None] | None:
    """The installed policy's bytes and the signature document for exactly those bytes.

    ``None`` when no policy is installed. Falls back to the history copy's signatures when
    ``active.yaml.sig`` is for other bytes (a crash between the two renames).
    """
    try:
        data = home.active_policy.read_bytes()
    except FileNotFoundError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    try:
        sig_doc = read_sig_file(home.active_policy)
    except SignatureError:
        sig_doc = None
    if sig_doc is not None and sig_doc.get("sha256") == digest:
        return data, sig_doc
    if home.policy_history.is_dir():
        for candidate in sorted(home.policy_history.glob("v*.yaml.sig")):
            try:
                doc = json.loads(candidate.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("sha256") == digest:
                return data, doc
    return data, sig_doc


class PolicyStore:
    def __init__(self, home: Home, *, now: Callable[[], datetime] = utcnow):
        self.home = home
        self._now = now
        self._active: ActivePolicy | None = None

    @property
    def active(self) -> ActivePolicy | None:
        return self._active

    # --- inputs ---------------------------------------------------------------------------

    def trust(self) -> Trust:
        try:
            return Trust.load(self.home.trust)
        except TrustError as exc:
            raise PolicyRefused("trust_unavailable", exc.message) from None

    def gateway_id(self) -> str:
        """This gateway's id from ``gateway.json``; PolicyRefused(wrong_gateway) if unreadable."""
        path = self.home.config
        try:
            config = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise PolicyRefused(
                "wrong_gateway", f"cannot tell which gateway this is: {path} does not exist"
            ) from None
        except (OSError, ValueError) as exc:
            raise PolicyRefused(
                "wrong_gateway", f"cannot tell which gateway this is: {path} is unreadable ({type(exc).__name__})"
            ) from None
        gateway_id = config.get("gateway_id") if isinstance(config, dict) else None
        if not isinstance(gateway_id, str) or not gateway_id or gateway_id == "*":
            raise PolicyRefused(
                "wrong_gateway", f"cannot tell which gateway this is: {path} has no usable \"gateway_id\""
            )
        return gateway_id

    # --- checking -------------------------------------------------------------------------

    def check_candidate(
        self, data: bytes, sig_doc: dict[str, Any] | None, active: ActivePolicy | None
    ) -> Verdict:
        """Run every check in order; the first failure is the verdict."""
        try:
            trust = self.trust()
        except PolicyRefused as exc:
            return _refuse(exc.code, exc.message)
        return self._check(data, sig_doc, trust, active)

    def _check(
        self,
        data: bytes,
        sig_doc: dict[str, Any] | None,
        trust: Trust,
        active: ActivePolicy | None,
        *,
        baseline_problem: str | None = None,
        floor_version: int = 0,
        check_expiry: bool = True,
        compare: bool = True,
    ) -> Verdict:
        # 1-3: who signed exactly these bytes
        try:
            report = examine_signatures(data, sig_doc, trust, kind="policy")
        except SignatureError as exc:
            return _refuse(exc.code, exc.message)
        sha256 = report.sha256
        if report.bad or report.wrong_kind:
            parts = []
            if report.bad:
                parts.append(f"signature(s) that do not verify over these bytes: {_names(trust, report.bad)}")
            if report.wrong_kind:
                parts.append(
                    f"signature(s) by {_names(trust, report.wrong_kind)} were made for another purpose "
                    "(a trust document), not for a policy"
                )
            return _refuse("unknown_signer", "refusing a policy with " + "; ".join(parts), sha256=sha256)
        signers = report.valid
        if not signers:
            who = ", ".join(sorted(report.untrusted)) or "nobody"
            return _refuse(
                "unknown_signer",
                f"no key in this gateway's trust file signed the policy (signed by: {who}); "
                "sign it with a trusted key",
                sha256=sha256,
            )
        if len(signers) < trust.threshold:
            return _refuse(
                "insufficient_signers",
                f"the policy needs {trust.threshold} distinct trusted signers and has {len(signers)}: "
                f"{_names(trust, signers)}",
                sha256=sha256,
                signers=signers,
            )
        # 4: valid document within the hard ceilings
        try:
            loaded: LoadedPolicy = parse_policy(data)
        except PolicyError as exc:
            return _refuse("invalid_policy", str(exc), sha256=sha256, signers=signers)
        policy = loaded.policy
        kw: dict[str, Any] = {"policy": policy, "sha256": sha256, "signers": signers}
        # 5: meant for this gateway
        try:
            gateway_id = self.gateway_id()
        except PolicyRefused as exc:
            return _refuse(exc.code, exc.message, **kw)
        if policy.gateway_id != gateway_id:
            if policy.gateway_id == "*":
                message = (
                    f'policy v{policy.version} has gateway_id "*" (any gateway); an installed policy must '
                    f'name this gateway: set gateway_id: "{gateway_id}" and sign it again'
                )
            else:
                message = (
                    f'policy v{policy.version} is for gateway "{policy.gateway_id}", '
                    f'not this gateway "{gateway_id}"'
                )
            return _refuse("wrong_gateway", message, **kw)
        # 6: still valid
        now = self._now()
        if check_expiry and policy.expires <= now:
            return _refuse(
                "expired",
                f"policy v{policy.version} expired at {_iso(policy.expires)} (now {_iso(now)}); "
                "sign a new version with a later `expires`",
                **kw,
            )
        if not compare:
            return Verdict(code=None, message=f"policy v{policy.version} verified", **kw)
        # 7: newer than anything installed
        if active is not None and policy.version <= active.version:
            return _refuse(
                "rollback",
                f"policy v{policy.version} is not newer than the active policy v{active.version}; "
                "a new policy needs a strictly higher version",
                **kw,
            )
        if policy.version <= floor_version:
            return _refuse(
                "rollback",
                f"policy v{policy.version} is not newer than v{floor_version}, the newest policy "
                "installed on this gateway; a new policy needs a strictly higher version",
                **kw,
            )
        # 8: loosening needs four eyes
        changes: tuple[FieldChange, ...] = ()
        if active is not None:
            changes = tuple(diff_policies(active.policy, policy))
            kw["changes"] = changes
            loose = loosened(changes)
            needs_quorum = bool(loose)
            why = "loosens " + ", ".join(describe_change(c) for c in loose) + f" relative to active v{active.version}"
        elif baseline_problem is not None:
            loose = []
            needs_quorum = True
            why = f"cannot be compared with the installed policy ({baseline_problem}), so it counts as loosening"
        else:
            loose, needs_quorum, why = [], False, ""
        if needs_quorum and len(signers) < trust.loosen_threshold:
            message = (
                f"policy v{policy.version} {why}; loosening needs {trust.loosen_threshold} distinct trusted "
                f"signers and it has {len(signers)}: {_names(trust, signers)}"
            )
            if report.untrusted:
                message += f" (signatures by untrusted keys {', '.join(sorted(report.untrusted))} do not count)"
            if len(trust.keys) < trust.loosen_threshold:
                message += (
                    f". This gateway trusts only {_count(len(trust.keys), 'key')}, so a limit can never be loosened "
                    "by one person (deliberate four-eyes): add a second signer to the trust file with a "
                    "trust rotation, then have both sign"
                )
            else:
                message += "; have another trusted key holder sign the same file (that extends its .sig)"
            return _refuse("needs_second_signer", message, **kw)
        tight = sum(1 for c in changes if c.direction == "tighten")
        if active is None:
            summary = "no active policy to compare with" if baseline_problem is None else "loosening quorum met"
        elif loose:
            summary = f"loosens {len(loose)} field(s), approved by {len(signers)} signers"
        elif tight:
            summary = f"tightens {tight} field(s)"
        else:
            summary = "changes no limit"
        return Verdict(
            code=None,
            message=f"policy v{policy.version} accepted ({summary}); signed by {_names(trust, signers)}",
            **kw,
        )

    # --- the installed policy -------------------------------------------------------------

    def _load(self, *, check_expiry: bool) -> ActivePolicy:
        installed = read_installed(self.home)
        if installed is None:
            raise PolicyRefused(
                "no_policy",
                f"no policy is installed ({self.home.active_policy} does not exist); "
                "the gateway does not trade without one",
            )
        data, sig_doc = installed
        verdict = self._check(data, sig_doc, self.trust(), None, check_expiry=check_expiry, compare=False)
        if not verdict.ok:
            raise PolicyRefused(verdict.code or "invalid_policy", f"the installed policy ({self.home.active_policy}): {verdict.message}")
        assert verdict.policy is not None and verdict.sha256 is not None
        return ActivePolicy(
            policy=verdict.policy, sha256=verdict.sha256, signers=verdict.signers, loaded_at=self._now()
        )

    def load_active(self) -> ActivePolicy:
        active = self._load(check_expiry=True)
        self._active = active
        return active

    def reload(self) -> ActivePolicy:
        """Like ``load_active``; on failure the last good ``.active`` stays in place."""
        return self.load_active()

    def _baseline(self) -> tuple[ActivePolicy | None, str | None, int]:
        """(installed policy ignoring expiry | None, why there is none, newest version in history)."""
        floor = self._history_floor()
        try:
            return self._load(check_expiry=False), None, floor
        except PolicyRefused as exc:
            return None, exc.message, floor

    def _history_floor(self) -> int:
        versions = [0]
        if self.home.policy_history.is_dir():
            for path in self.home.policy_history.iterdir():
                match = _HISTORY_NAME.match(path.name)
                if match:
                    versions.append(int(match.group(1)))
        return max(versions)

    def check_file(self, path: Path) -> Verdict:
        """``check_candidate`` for ``path`` and ``path.sig`` against the installed policy."""
        data, sig_doc, refused = _read_candidate(Path(path))
        if refused is not None:
            return refused
        try:
            trust = self.trust()
        except PolicyRefused as exc:
            return _refuse(exc.code, exc.message)
        active, problem, floor = self._baseline()
        return self._check(data, sig_doc, trust, active, baseline_problem=problem, floor_version=floor)

    # --- installing -----------------------------------------------------------------------

    def apply(self, path: Path) -> ActivePolicy:
        """Check ``path`` + ``path.sig`` and install them, or raise PolicyRefused."""
        data, sig_doc, refused = _read_candidate(Path(path))
        if refused is not None:
            refused.raise_if_refused()
        return self.apply_bytes(data, sig_doc)

    def apply_bytes(self, data: bytes, sig_doc: dict[str, Any] | None) -> ActivePolicy:
        with home_lock(self.home):
            trust = self.trust()
            active, problem, floor = self._baseline()
            verdict = self._check(data, sig_doc, trust, active, baseline_problem=problem, floor_version=floor)
            verdict.raise_if_refused()
            return self._install(data, sig_doc, verdict)

    def install_initial(self, data: bytes, sig_doc: dict[str, Any] | None) -> ActivePolicy:
        """Install the first policy of a new home (``gatewayctl init``)."""
        with home_lock(self.home):
            if self.home.active_policy.exists():
                raise FileExistsError(
                    f"{self.home.active_policy} already exists; use `gatewayctl policy apply` to change the policy"
                )
            verdict = self._check(data, sig_doc, self.trust(), None)
            verdict.raise_if_refused()
            return self._install(data, sig_doc, verdict)

    def _install(self, data: bytes, sig_doc: dict[str, Any] | None, verdict: Verdict) -> ActivePolicy:
        assert verdict.policy is not None and verdict.sha256 is not None and sig_doc is not None
        sig_bytes = dump_sig_doc(sig_doc)
        history = self.home.policy_history / f"v{verdict.policy.version}.yaml"
        write_public(history, data)
        write_public(sig_path_for(history), sig_bytes)
        write_public(sig_path_for(self.home.active_policy), sig_bytes)
        write_public(self.home.active_policy, data)
        active = ActivePolicy(
            policy=verdict.policy, sha256=verdict.sha256, signers=verdict.signers, loaded_at=self._now()
        )
        self._active = active
        return active


def _read_candidate(path: Path) -> tuple[bytes, dict[str, Any] | None, Verdict | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return b"", None, _refuse("invalid_policy", f"cannot read {path}: {exc.strerror}")
    try:
        sig_doc = read_sig_file(path)
    except SignatureError as exc:
        return data, None, _refuse(exc.code, exc.message)
    if sig_doc is None:
        return data, None, _refuse("unsigned", f"{path} is not signed: there is no {sig_path_for(path).name}")
    return data, sig_doc, None


def _names(trust: Trust, key_ids: Any) -> str:
    ids = sorted(key_ids)
    return ", ".join(trust.name_of(k) for k in ids) if ids else "none"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
