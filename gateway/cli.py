"""gatewayctl: the operator's command line. Thin: every command calls into the modules.

Commands that change a running gateway (lockdown, unlock) go through its operator socket
when it is up, and straight to the home's files when it is not, so they work either way.
Secrets are read from standard input, never from arguments (which other users can see).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from .home import Home


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _fail(message: str, code: int = 1) -> int:
    print(f"gatewayctl: {message}", file=sys.stderr)
    return code


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _rate_limit(text: str) -> int:
    from .paper_traffic import parse_rate_limit

    try:
        return parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_secret(prompt: str) -> str:
    """One line from stdin (or a hidden prompt on a terminal)."""
    if sys.stdin.isatty():
        secret = getpass.getpass(prompt)
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise ValueError("no secret on standard input")
    return secret


def _secret_from_file(path: Path) -> str:
    """The first line of an owner-only file (a secret in a world-readable file is already lost)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ValueError(f"{path} has mode {mode:o}; a secret file must be owner-only (chmod 600 {path})")
    secret = path.read_text().splitlines()[0].strip() if path.read_text().strip() else ""
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


# -- operator socket ----------------------------------------------------------------------


async def _operator_call(home: Home, method: str, path: str, body: dict | None = None) -> dict | None:
    """Call the running gateway; None when it is not running."""
    import aiohttp

    if not home.operator_socket.exists():
        return None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(home.operator_socket))) as session:
            async with session.request(method, f"http://gateway{path}", json=body, timeout=aiohttp.ClientTimeout(total=60)) as resp:
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise RuntimeError(data.get("error", f"operator call failed with {resp.status}"))
                return data
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError):
        return None


def operator_call(home: Home, method: str, path: str, body: dict | None = None) -> dict | None:
    return asyncio.run(_operator_call(home, method, path, body))


# -- commands -----------------------------------------------------------------------------


def cmd_init(args) -> int:
    from .bootstrap import InitError, init_home

    try:
        policy_text = Path(args.policy).read_text() if args.policy else None
        result = init_home(args.home, policy_text=policy_text)
    except InitError as exc:
        return _fail(str(exc))
    if args.json:
        _print_json(result.to_json())
    else:
        print(f"gateway home created at {result.home} (gateway id {result.gateway_id})")
        print(f"bot key id:   {result.bot_key_id}")
        print(f"bot secret:   {result.bot_secret}   (shown once; store it in your bot's secret store)")
        print(f"policy:       {result.policy} (v1, signed by {result.signer_key_id})")
        print(f"signing keys: {result.signer_key} and {result.second_signer_key}")
        print("              give each to a different person and remove both from this machine: one signature")
        print("              tightens the policy; loosening it, or trusting another signer, needs both")
    return 0


def cmd_serve(args) -> int:
    from .server import ServeOptions, StartupError, serve

    host, port = args.listen
    options = ServeOptions(
        venue=args.venue,
        upstream_url=args.upstream_url,
        exchange=args.exchange,
        host=host,
        port=port,
        paper_equity=args.paper_equity,
        paper_walk_s=args.paper_walk,
        operator_listen=args.operator_listen,
        sandbox=args.sandbox,
    )
    try:
        serve(args.home, options)
    except StartupError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_paper_broker(args) -> int:
    import secrets

    from .paper_broker import run_paper_broker

    host, port = args.listen
    key_id = args.key_id or "PK" + secrets.token_hex(9).upper()
    secret = args.secret or secrets.token_urlsafe(30)
    if not args.key_id:
        print(f"paper broker key id: {key_id}\npaper broker secret: {secret}", flush=True)
    try:
        asyncio.run(
            run_paper_broker(
                host,
                port,
                equity=args.equity,
                key_id=key_id,
                secret=secret,
                dialect=args.dialect,
                rate_limit=args.rate_limit,
                lenient=args.lenient,
                walk_s=args.walk,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


def cmd_status(args) -> int:
    home = Home.at(args.home)
    live = operator_call(home, "GET", "/status")
    if live is None:
        from .control.state import TradingControl
        from .policy.store import PolicyRefused, PolicyStore

        try:
            policy = PolicyStore(home).load_active()
            policy_info: dict[str, Any] = {"version": policy.version, "sha256": policy.sha256}
        except PolicyRefused as exc:
            policy_info = {"error": str(exc)}
        from .control import broker_suspension

        live = {
            "running": False,
            "state": TradingControl(home.state).current.to_json(),
            "policy": policy_info,
            "exposure": "unknown: the gateway is not running",
            "broker_kill_switch": {
                "countdown": None,
                "suspend_trade": broker_suspension.read_record(home.root).to_json(),
            },
        }
    else:
        live = {"running": True, **live}
    if args.json:
        _print_json(live)
        return 0
    state = live["state"]
    print(f"running:  {live['running']}")
    print(f"state:    {state['state']} since {state['since']} ({state['reason']})")
    policy = live["policy"]
    print(f"policy:   v{policy.get('version')} sha256 {policy.get('sha256', policy.get('error'))}")
    if live["running"]:
        print(f"equity:   {live['equity']}")
        for name, row in live["exposure"].items():
            print(f"  {name:28} {row['value']} / limit {row['limit']}")
    else:
        print(f"exposure: {live['exposure']}")
    _print_kill_switch(live.get("broker_kill_switch") or {})
    return 0


def _print_kill_switch(switch: dict) -> None:
    countdown = switch.get("countdown")
    if countdown is None:
        print("broker countdown: off")
    else:
        print(f"broker countdown: {countdown['countdown_s']} s, renewed every {countdown['interval_s']} s")
        for symbol, beat in countdown["symbols"].items():
            error = f" (last attempt failed: {beat['error']})" if beat["error"] else ""
            print(f"  {symbol:28} last beat {beat['last_beat']}{error}")
    suspension = switch.get("suspend_trade") or {}
    if suspension.get("suspended"):
        print(f"broker suspend_trade: SET since {suspension.get('since')} ({suspension.get('reason')})")
    else:
        print("broker suspend_trade: not set by the gateway")


def _credentials(home: Home):
    from .keys.clients import BotCredentials
    from .keys.vault import Vault

    return BotCredentials(home, Vault.open(home))


def _audit_cli(home: Home, type: str, data: dict) -> None:
    from .audit.log import append_sync

    append_sync(home.audit_log, type, {"actor": "cli", **data})


def cmd_keys(args) -> int:
    home = Home.at(args.home)
    creds = _credentials(home)
    if args.keys_command == "issue":
        issued = creds.issue(
            label=args.label,
            scopes=("read_only",) if args.read_only else ("trade",),
            expires_in_s=args.expires_in,
            allowed_ips=args.allow_ip or None,
            asset_classes=args.asset_class or None,
            dialects=tuple(args.dialect) if args.dialect else ("alpaca", "binance-futures"),
        )
        _audit_cli(home, "key.issue", {"key_id": issued.key_id, "label": args.label, "read_only": args.read_only})
        if args.json:
            _print_json({"key_id": issued.key_id, "secret": issued.secret})
        else:
            print(f"key id: {issued.key_id}\nsecret: {issued.secret}   (shown once)")
    elif args.keys_command == "list":
        rows = creds.list()
        if args.json:
            _print_json(rows)
        else:
            for row in rows:
                print("  ".join(f"{k}={v}" for k, v in row.items()))
    elif args.keys_command == "rotate":
        issued = creds.rotate(args.key_id, overlap_s=args.overlap)
        _audit_cli(home, "key.rotate", {"key_id": args.key_id, "new_key_id": issued.key_id, "overlap_s": args.overlap})
        if args.json:
            _print_json({"key_id": issued.key_id, "secret": issued.secret, "replaces": args.key_id})
        else:
            print(f"key id: {issued.key_id}\nsecret: {issued.secret}   (shown once; {args.key_id} works for {args.overlap:g}s more)")
    elif args.keys_command == "rotate-data-key":
        from .keys.vault import Vault

        version = Vault.open(home).rotate_data_key()
        _audit_cli(home, "keystore.rotate_data_key", {"data_key_version": version})
        print(f"keystore re-encrypted under data key v{version}; a running gateway reads it on its next use")
    elif args.keys_command == "unsuspend":
        live = operator_call(home, "POST", "/keys/unsuspend", {"key_id": args.key_id})
        if live is None:
            return _fail("the gateway is not running (suspensions last until a restart)")
        print(f"{args.key_id} may trade again")
    elif args.keys_command == "revoke":
        creds.revoke(args.key_id)
        _audit_cli(home, "key.revoke", {"key_id": args.key_id})
        print(f"revoked {args.key_id}")
    return 0


def cmd_broker_keys(args) -> int:
    from .keys.broker import BrokerKeys
    from .keys.vault import Vault

    home = Home.at(args.home)
    keys = BrokerKeys(Vault.open(home))
    try:
        if args.secret_file:
            secret = _secret_from_file(Path(args.secret_file))
        else:
            secret = _read_secret(f"{args.venue} secret for {args.key_id}: ")
    except ValueError as exc:
        return _fail(str(exc))
    if args.broker_command == "rotate":
        # Prove the new key works (a read-only call) before it replaces the old one.
        problem = asyncio.run(_validate_broker_key(args.venue, args.key_id, secret, args.upstream_url, args.exchange))
        if problem is not None:
            _audit_cli(home, "broker_key.rotate.refused", {"venue": args.venue, "reason": problem})
            return _fail(f"the new {args.venue} key was not accepted by the venue ({problem}); nothing changed")
        version = keys.rotate(args.venue, args.key_id, secret)
    else:
        version = keys.set(args.venue, args.key_id, secret)
    described = keys.describe(args.venue)
    _audit_cli(home, f"broker_key.{args.broker_command}", {"venue": args.venue, "key_id": described["key_id"], "version": version})
    print(f"{args.broker_command}: {args.venue} key {described['key_id']} (version {version}); "
          "a running gateway uses it from its next request")
    return 0


async def _validate_broker_key(venue_name: str, key_id: str, secret: str, upstream_url: str | None, exchange: str) -> str | None:
    """None when the venue accepts the key for a read-only account call, else why not."""
    from .errors import GatewayError

    if venue_name == "alpaca":
        from .venues.alpaca import AlpacaVenue

        kwargs = {"base_url": upstream_url} if upstream_url else {}
        venue = AlpacaVenue(lambda: (key_id, secret), **kwargs)
    else:
        from .venues.ccxt import CcxtVenue

        urls = {"api": upstream_url} if upstream_url else None
        venue = CcxtVenue(exchange, lambda: (key_id, secret), urls=urls)
    try:
        await venue.start()
        await venue.get_account()
    except GatewayError as exc:
        return exc.message
    finally:
        await venue.close()
    return None


def cmd_lockdown(args) -> int:
    """The state file first, so the lockdown holds even if the gateway is hung or down; then
    the running gateway (if any) drains in-flight orders and cancels or flattens."""
    from .control.state import TradingControl
    from .model import TradingState

    home = Home.at(args.home)
    target = TradingState.REDUCE_ONLY if args.reduce_only else TradingState.LOCKED
    previous, _ = TradingControl(home.state).set(target, args.reason, "cli")
    _audit_cli(home, "control.lockdown.requested", {"from": previous.state.value, "to": target.value, "reason": args.reason})
    body = {"reason": args.reason, "reduce_only": args.reduce_only, "cancel_open": args.cancel_open,
            "flatten": args.flatten, "suspend_at_broker": args.suspend_at_broker, "actor": "cli"}
    try:
        live = operator_call(home, "POST", "/lockdown", body)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"{target.value}: {args.reason} (state saved; the running gateway did not answer: {exc})", file=sys.stderr)
        return 3 if (args.cancel_open or args.flatten or args.suspend_at_broker) else 0
    if live is not None:
        done = [f"{live['drained_in_flight']} in-flight orders settled"]
        if "canceled" in live:
            done.append(f"{len(live['canceled'])} orders canceled")
        if "flattened" in live:
            done.append(f"{len(live['flattened'])} positions closed")
        if "suspend_at_broker" in live:
            done.append(f"broker suspend_trade {live['suspend_at_broker']}")
        print(f"{target.value}: {args.reason} (gateway running; {', '.join(done)})")
        return 3 if live.get("suspend_at_broker", "set") != "set" else 0
    print(f"{target.value}: {args.reason} (gateway not running; it will start in this state)")
    code = 0
    if args.suspend_at_broker or _config_suspends(home):
        code = _suspend_offline(home, args)
    if args.cancel_open or args.flatten:
        print("note: --cancel-open/--flatten need the running gateway to reach the venue; start it (it starts "
              "in this state) and repeat the command", file=sys.stderr)
        return 3
    return code


def _config_suspends(home: Home) -> bool:
    """gateway.json's ``lockdown_suspend_at_broker`` (an unreadable config suspends nothing here:
    the state file is already locked, and the flag is the explicit way)."""
    from .config import ConfigError, load_config

    try:
        return bool(load_config(home.config).lockdown_suspend_at_broker)
    except ConfigError:
        return False


def _offline_alpaca(home: Home, upstream_url: str | None):
    """An Alpaca venue with the vault's broker key, for when the gateway is not running."""
    from .keys.broker import BrokerKeys
    from .keys.vault import Vault
    from .venues.alpaca import AlpacaVenue

    keys = BrokerKeys(Vault.open(home))
    keys.get("alpaca")  # raises BrokerKeyMissing before anything is built
    kwargs = {"base_url": upstream_url} if upstream_url else {}
    return AlpacaVenue(lambda: keys.get("alpaca"), stream=False, **kwargs)


def _suspend_offline(home: Home, args) -> int:
    from .control import broker_suspension
    from .errors import GatewayError
    from .keys.broker import BrokerKeyMissing

    async def run() -> None:
        venue = _offline_alpaca(home, args.upstream_url)
        await venue.start()
        try:
            await broker_suspension.suspend(venue, home.root, args.reason, "cli")
        finally:
            await venue.close()

    try:
        asyncio.run(run())
    except BrokerKeyMissing:
        return _fail("--suspend-at-broker: no alpaca broker key in the vault (gatewayctl broker-keys set)", 3)
    except GatewayError as exc:
        return _fail(f"--suspend-at-broker: the broker refused: {exc.message}", 3)
    _audit_cli(home, "control.suspend_at_broker", {"result": "set"})
    print("broker suspend_trade set (the broker refuses new orders from any holder of the account's keys)")
    return 0


def _lift_offline(home: Home, args) -> int:
    from .control import broker_suspension
    from .errors import GatewayError
    from .keys.broker import BrokerKeyMissing

    record = broker_suspension.read_record(home.root)
    if not record.suspended:
        return 0

    async def run() -> None:
        venue = _offline_alpaca(home, args.upstream_url or record.upstream or None)
        await venue.start()
        try:
            await broker_suspension.lift(venue, home.root)
        finally:
            await venue.close()

    try:
        asyncio.run(run())
    except BrokerKeyMissing:
        return _fail("the broker's suspend_trade is still set: no alpaca broker key in the vault", 3)
    except GatewayError as exc:
        return _fail(f"the broker's suspend_trade is still set: the broker refused: {exc.message}", 3)
    _audit_cli(home, "control.suspend_at_broker", {"result": "lifted"})
    print("broker suspend_trade lifted")
    return 0


def cmd_unlock(args) -> int:
    home = Home.at(args.home)
    try:
        live = operator_call(home, "POST", "/unlock", {"reason": args.reason, "actor": "cli"})
    except RuntimeError as exc:
        return _fail(str(exc))
    if live is None:
        from .control.state import TradingControl
        from .model import TradingState

        previous, _ = TradingControl(home.state).set(TradingState.ACTIVE, args.reason, "cli")
        _audit_cli(home, "control.unlock", {"from": previous.state.value, "to": "ACTIVE", "reason": args.reason})
        print(f"ACTIVE: {args.reason}")
        return _lift_offline(home, args)
    print(f"ACTIVE: {args.reason}")
    lifted = live.get("suspend_at_broker")
    if lifted == "lifted":
        print("broker suspend_trade lifted")
    elif lifted is not None:
        return _fail(f"the broker's suspend_trade is {lifted}", 3)
    return 0


def cmd_policy(args) -> int:
    from .policy import signing

    sub = args.policy_command
    if sub == "keygen":
        key_id = signing.generate_keypair(Path(args.out))
        print(f"key id {key_id}: private key {args.out} (owner-only), public key {Path(args.out).with_suffix('.pub')}")
        return 0
    if sub == "sign":
        sig = signing.sign_file(Path(args.file), Path(args.key), kind="trust" if args.trust else "policy")
        doc = signing.read_sig_file(Path(args.file)) or {}
        print(f"signed {args.file}: {len(doc.get('signatures', []))} signature(s) in {sig}")
        return 0
    if sub == "schema":
        from .policy.schema import json_schema_text

        print(json_schema_text())
        return 0

    from .policy.diff import render_diff
    from .policy.store import PolicyRefused, PolicyStore

    home = Home.at(args.home)
    store = PolicyStore(home)
    if sub == "show":
        active = store.load_active()
        print(f"# version {active.version}, sha256 {active.sha256}, signed by {', '.join(sorted(active.signers))}")
        sys.stdout.write(home.active_policy.read_text())
        return 0
    if sub in ("verify", "diff"):
        verdict = store.check_file(Path(args.file))
        if sub == "diff":
            try:
                active_version = store.load_active().version
            except PolicyRefused:
                active_version = None
            print(render_diff(verdict.changes, old_version=active_version,
                              new_version=verdict.policy.version if verdict.policy else None))
            if not verdict.ok:
                print(f"(apply would be refused: {verdict.code})")
            return 0
        if verdict.ok:
            print(f"ok: {args.file} would be accepted (signed by {', '.join(sorted(verdict.signers))})")
            return 0
        return _fail(f"refused ({verdict.code}): {verdict.message}")
    if sub == "apply":
        path = str(Path(args.file).resolve())
        try:
            live = operator_call(home, "POST", "/policy/apply", {"path": path, "actor": "cli"})
        except RuntimeError as exc:
            return _fail(str(exc))
        if live is None:
            try:
                active = store.apply(Path(path))
            except PolicyRefused as exc:
                _audit_cli(home, "policy.refused", {"path": path, "code": exc.code, "message": exc.message})
                return _fail(f"refused ({exc.code}): {exc.message}")
            _audit_cli(home, "policy.apply", {"version": active.version, "sha256": active.sha256,
                                              "signers": sorted(active.signers)})
            print(f"installed policy v{active.version} ({active.sha256[:12]}); the gateway is not running and will start with it")
            return 0
        print(f"applied policy v{live['version']} ({live['sha256'][:12]}) to the running gateway")
        return 0
    raise AssertionError(sub)


def cmd_trust(args) -> int:
    from .policy import signing
    from .policy.trust import Trust, rotate_trust

    home = Home.at(args.home)
    current = Trust.load(home.trust)
    public = signing.load_public_key(Path(args.public_key))
    successor = current.successor(add={args.name or signing.key_id_of(public): signing.public_key_b64(public)})
    draft = home.policy_dir / f"trust-v{successor.version}.json"
    draft.write_bytes(successor.to_bytes())
    for key in args.key:
        signing.sign_file(draft, Path(key), kind="trust")
    confirmed = [args.confirm_on_host] if args.confirm_on_host else []
    trust = rotate_trust(home, draft, confirmed_key_ids=confirmed)
    _audit_cli(home, "trust.rotate", {"version": trust.version, "keys": sorted(trust.keys),
                                      "confirmed_on_host": confirmed})
    print(f"trust v{trust.version}: {len(trust.keys)} keys, threshold {trust.threshold}, loosening needs {trust.loosen_threshold}")
    return 0


def cmd_audit(args) -> int:
    from .audit import verify

    home = Home.at(args.home)
    if args.audit_command == "verify":
        from .audit.checkpoint import load_public_key

        public_key = load_public_key(home.audit_signing_key) if home.audit_signing_key.exists() else None
        result = verify.verify_log(home.audit_log, checkpoints_path=home.audit_checkpoints, public_key=public_key)
        if args.json:
            _print_json({"ok": result.ok, "records": result.records, "last_seq": result.last_seq,
                         "error": result.error, "error_seq": result.error_seq, "checkpoints": result.checkpoints,
                         "last_checkpoint_seq": result.last_checkpoint_seq, "uncovered_records": result.uncovered})
        elif result.ok:
            print(f"ok: {result.records} records, chain intact through seq {result.last_seq}, "
                  f"{result.checkpoints} signed checkpoints verified")
            if result.uncovered:
                print(f"note: the last {result.uncovered} records (after seq {result.last_checkpoint_seq}) are not "
                      "covered by a signed checkpoint yet; `gatewayctl audit checkpoint` signs them now")
        else:
            print(f"TAMPERED or damaged at seq {result.error_seq}: {result.error}", file=sys.stderr)
        return 0 if result.ok else 1
    if args.audit_command == "checkpoint":
        live = operator_call(home, "POST", "/audit/checkpoint")
        if live is None:
            from .audit.checkpoint import load_or_create_checkpoint_key
            from .audit.log import checkpoint_sync

            cp = checkpoint_sync(home.audit_log, home.audit_checkpoints, load_or_create_checkpoint_key(home.audit_signing_key))
            live = {"seq": cp.seq, "hash": cp.hash} if cp else {"checkpoint": None}
        _print_json(live)
        return 0
    if args.audit_command == "export":
        records = verify.iter_records(home.audit_log, since_seq=args.since_seq)
    elif args.audit_command == "tail":
        records = _last(verify.iter_records(home.audit_log), args.n)
    else:  # query
        records = verify.query(home.audit_log, type=args.type, key_id=args.key_id, code=args.code,
                               decision=args.decision, since=args.since, until=args.until)
    out = sys.stdout.buffer
    for record in records:
        out.write(record.line if record.line else orjson.dumps(record.to_dict()) + b"\n")
    out.flush()
    return 0


def _last(records, n: int):
    from collections import deque

    return deque(records, maxlen=n)


# -- parser -------------------------------------------------------------------------------


def cmd_dashboard(args) -> int:
    """Print the dashboard's URL; with no TCP operator listener, serve it on loopback (talking to
    the operator socket) until interrupted."""
    from .admin.dashboard.local import serve_local

    home = Home.at(args.home)
    where = operator_call(home, "GET", "/dashboard/api/where")
    if where is None:
        return _fail(f"no gateway is running on {home.root} (start it with `gatewayctl serve --home {home.root}`)")
    if where.get("operator_url"):
        print(f"{where['operator_url']}/dashboard")
        return 0
    try:
        asyncio.run(serve_local(home, args.port, announce=lambda url: print(url, flush=True)))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_pnl(args) -> int:
    """P&L attribution (FIFO) from the audit log's fill records; unrealized at the running
    gateway's marks when it is running."""
    from decimal import Decimal as D

    from .admin.fills import fills_from_log
    from .ledger.pnl import attribute

    home = Home.at(args.home)
    if args.since is not None:
        from datetime import datetime

        try:
            datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            return _fail(f"--since must be an ISO date or time, not {args.since!r}", 2)
    live = operator_call(home, "GET", "/dashboard/api/overview")
    marks = {p["symbol"]: D(p["mark"]) for p in (live or {}).get("positions", [])}
    result = attribute(fills_from_log(home.audit_log, args.since), marks).to_json()
    result["marks"] = "live" if live is not None else "none (gateway not running: unrealized is 0)"
    if args.json:
        _print_json(result)
        return 0
    table = result["by_symbol"] if args.by == "symbol" else result["by_bot"]
    print(f"{args.by:<28} {'realized':>14} {'unrealized':>14} {'trades':>7} {'win rate':>9} {'open qty':>12}")
    for name, t in table.items():
        rate = "-" if t["win_rate"] is None else f"{float(t['win_rate']) * 100:.1f}%"
        print(f"{name:<28} {t['realized']:>14} {t['unrealized']:>14} {t['trades']:>7} {rate:>9} {t['open_qty']:>12}")
    if not table:
        print("(no fills recorded)")
    print(f"marks: {result['marks']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayctl", description="Risk gateway for trading bots.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a new gateway home")
    p.add_argument("home")
    p.add_argument("--policy", help="start with this policy instead of the shipped default (signed by the new key)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--home", required=True)
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8700))
    p.add_argument("--venue", choices=("paper", "alpaca", "ccxt"), default="paper")
    p.add_argument("--upstream-url")
    p.add_argument("--exchange", default="binanceusdm")
    p.add_argument("--paper-equity", type=_decimal, default=Decimal("100000"))
    p.add_argument(
        "--paper-walk", type=float, metavar="SECONDS",
        help="embedded paper venue: move every mark along its seeded price path this often (off by default)",
    )
    p.add_argument("--operator-listen", type=_listen, help="also serve the operator API on TCP (needs the operator token)")
    p.add_argument("--sandbox", action="store_true", help="ccxt venue: the exchange's sandbox / demo environment")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("paper-broker", help="run a standalone paper broker")
    p.add_argument("--listen", type=_listen, required=True)
    p.add_argument("--dialect", choices=("alpaca", "binance-futures"), default="alpaca")
    p.add_argument("--equity", type=_decimal, default=Decimal("100000"))
    p.add_argument("--key-id")
    p.add_argument("--secret")
    p.add_argument(
        "--rate-limit",
        type=_rate_limit,
        metavar="N/min",
        help="answer 429 beyond N requests a minute (Binance: N request weight), as the broker does; off by default",
    )
    p.add_argument(
        "--walk", type=float, metavar="SECONDS",
        help="move every mark along its seeded price path this often (off by default; /_paper/prices pins one)",
    )
    p.add_argument(
        "--lenient",
        action="store_true",
        help="alpaca: accept what Alpaca refuses (selling shares an open order holds, crypto bracket/OTO orders, "
        "non-day fractional orders)",
    )
    p.set_defaults(func=cmd_paper_broker)

    p = sub.add_parser("status", help="trading state, policy and exposure")
    p.add_argument("--home", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("keys", help="bot credentials")
    ks = p.add_subparsers(dest="keys_command", required=True)
    k = ks.add_parser("issue")
    k.add_argument("--home", required=True)
    k.add_argument("--label", default="")
    k.add_argument("--read-only", action="store_true")
    k.add_argument("--expires-in", type=float, help="seconds until the credential expires")
    k.add_argument("--allow-ip", action="append", help="source address or network allowed (repeat)")
    k.add_argument("--asset-class", action="append", choices=("us_equity", "crypto", "us_option"),
                   help="asset class this credential may trade (repeat; default all)")
    k.add_argument("--dialect", action="append", choices=("alpaca", "binance-futures"),
                   help="wire format this credential may use (repeat; default both)")
    k.add_argument("--json", action="store_true")
    k = ks.add_parser("list")
    k.add_argument("--home", required=True)
    k.add_argument("--json", action="store_true")
    k = ks.add_parser("rotate")
    k.add_argument("--home", required=True)
    k.add_argument("key_id")
    k.add_argument("--overlap", type=float, default=3600.0, help="seconds the old key keeps working")
    k.add_argument("--json", action="store_true")
    k = ks.add_parser("rotate-data-key", help="re-encrypt every stored secret under a new data key")
    k.add_argument("--home", required=True)
    k = ks.add_parser("unsuspend", help="lift a suspension after a burst of rejections")
    k.add_argument("--home", required=True)
    k.add_argument("key_id")
    k = ks.add_parser("revoke")
    k.add_argument("--home", required=True)
    k.add_argument("key_id")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("broker-keys", help="the upstream broker key, stored encrypted")
    bs = p.add_subparsers(dest="broker_command", required=True)
    for name in ("set", "rotate"):
        b = bs.add_parser(name, help="the secret is read from standard input" + (
            "; the new key is checked with a read-only call first" if name == "rotate" else ""))
        b.add_argument("--home", required=True)
        b.add_argument("--venue", choices=("alpaca", "ccxt"), required=True)
        b.add_argument("--key-id", required=True)
        b.add_argument("--upstream-url", help="the venue's URL when it is not the default (rotate checks the key there)")
        b.add_argument("--exchange", default="binanceusdm", help="ccxt exchange id")
        b.add_argument("--secret-file", help="read the secret from this owner-only file instead of standard input")
    p.set_defaults(func=cmd_broker_keys)

    p = sub.add_parser("lockdown", help="stop all new orders now")
    p.add_argument("--home", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--reduce-only", action="store_true", help="allow orders that only reduce positions")
    p.add_argument("--cancel-open", action="store_true", help="also cancel every open order")
    p.add_argument("--flatten", action="store_true", help="also close every position")
    p.add_argument("--suspend-at-broker", action="store_true",
                   help="alpaca: also set the account's own suspend_trade, so the broker refuses new orders from "
                        "any holder of its keys (unlock clears it)")
    p.add_argument("--upstream-url", help="the broker's URL when the gateway is not running (default Alpaca paper)")
    p.set_defaults(func=cmd_lockdown)

    p = sub.add_parser("policy", help="signed risk policies")
    ps = p.add_subparsers(dest="policy_command", required=True)
    k = ps.add_parser("keygen", help="create a policy-signing key pair")
    k.add_argument("--out", required=True, help="path of the private key (.pub is written beside it)")
    k = ps.add_parser("sign", help="sign FILE (adds to FILE.sig)")
    k.add_argument("file")
    k.add_argument("--key", required=True)
    k.add_argument("--trust", action="store_true", help="FILE is a trust document, not a policy")
    for name, text in (("verify", "check FILE against the home's trust and active policy"),
                       ("diff", "each field of FILE against the active policy: tighten or loosen"),
                       ("apply", "install FILE; the running gateway switches atomically or refuses")):
        k = ps.add_parser(name, help=text)
        k.add_argument("file")
        k.add_argument("--home", required=True)
    k = ps.add_parser("show", help="the active policy")
    k.add_argument("--home", required=True)
    ps.add_parser("schema", help="the policy's JSON Schema")
    p.set_defaults(func=cmd_policy)

    p = sub.add_parser("trust", help="policy signers")
    ts = p.add_subparsers(dest="trust_command", required=True)
    k = ts.add_parser("add-key", help="trust another signer (signed by current signers)")
    k.add_argument("--home", required=True)
    k.add_argument("--public-key", required=True)
    k.add_argument("--name")
    k.add_argument("--key", action="append", required=True, help="a current signer's private key (repeat)")
    k.add_argument("--confirm-on-host", metavar="KEY_ID",
                   help="an operator on this host confirms the new signer (its key id); needed only when the "
                        "current trust has fewer keys than loosening needs")
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser("audit", help="the tamper-evident audit log")
    aus = p.add_subparsers(dest="audit_command", required=True)
    k = aus.add_parser("verify", help="exit 0 if and only if the log is intact")
    k.add_argument("--home", required=True)
    k.add_argument("--json", action="store_true")
    k = aus.add_parser("export", help="records as JSON lines on standard output")
    k.add_argument("--home", required=True)
    k.add_argument("--jsonl", action="store_true", help="JSON lines (the only format)")
    k.add_argument("--since-seq", type=int)
    k = aus.add_parser("checkpoint", help="sign a checkpoint now (keep a copy off the machine)")
    k.add_argument("--home", required=True)
    k = aus.add_parser("tail", help="the last N records")
    k.add_argument("--home", required=True)
    k.add_argument("-n", type=int, default=20)
    k = aus.add_parser("query", help="records by bot, code, decision, type, time")
    k.add_argument("--home", required=True)
    k.add_argument("--key-id")
    k.add_argument("--code")
    k.add_argument("--decision", choices=("allow", "deny"))
    k.add_argument("--type", help="exact type, or a prefix ending in '.' (order.)")
    k.add_argument("--since", help="ISO-8601 time")
    k.add_argument("--until", help="ISO-8601 time")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("dashboard", help="the operator's dashboard: print its URL (or serve it on loopback)")
    p.add_argument("--home", required=True)
    p.add_argument("--port", type=int, default=0, help="loopback port when serving it here (default: any free port)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("pnl", help="P&L attribution per bot or symbol (FIFO, from the audit log)")
    p.add_argument("--home", required=True)
    p.add_argument("--by", choices=("bot", "symbol"), default="bot")
    p.add_argument("--since", help="ISO-8601 date or time (UTC)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pnl)

    p = sub.add_parser("unlock", help="return to ACTIVE (and lift a broker-side suspension the gateway set)")
    p.add_argument("--home", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--upstream-url", help="the broker's URL when the gateway is not running (default: where "
                                          "the suspension was set)")
    p.set_defaults(func=cmd_unlock)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except Exception as exc:  # noqa: BLE001 - one clear line, no traceback with local values
        name = type(exc).__name__
        return _fail(f"{name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
