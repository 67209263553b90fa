"""Builds and runs the gateway: startup checks, the parts wired together, the two listeners.

Startup refuses (``StartupError``, one message naming the problem) when a secret file is
readable by others, the keystore cannot be decrypted, no valid signed policy is installed,
or the broker key for an HTTP venue is missing. It never starts half-configured.

Listeners: the bot-facing HTTP address (Alpaca under ``/v2``, ``/health``) and the operator
plane on a unix socket in the home (owner-only), see ``gateway.admin.api``.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import signal
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
from aiohttp import web

from .admin.metrics import GatewayMetrics
from .audit.checkpoint import last_checkpoint, load_or_create_checkpoint_key
from .audit.log import AuditLog
from .config import ConfigError, load_config
from .control.breakers import LossBreakers
from .control.state import TradingControl
from .dialects.alpaca import mount_alpaca
from .dialects.alpaca_data_stream import mount_data_streams
from .home import Home, loose_permissions
from .listener import HEADER_TIMEOUT_S, MAX_CONNECTIONS, GuardedTCPSite, connection_cap, guarded_runner
from .log_rate import limit_log_rate
from .keys.broker import BrokerKeyMissing, BrokerKeys
from .keys.clients import BotCredentials
from .keys.master import VaultError
from .keys.vault import Vault
from .model import TradingState, utcnow
from .guards.alert_webhook import AlertWebhook
from .pipeline import RiskGateway
from .policy.store import PolicyRefused, PolicyStore
from .ports import Venue
from .risk.engine import EngineConfig, RiskEngine
from .risk.portfolio import Portfolio

log = logging.getLogger("gateway")

VENUES = ("paper", "alpaca", "ccxt")


class StartupError(Exception):
    """The gateway will not start; the message says why and what to do."""


@dataclass(frozen=True)
class ServeOptions:
    venue: str = "paper"
    upstream_url: str | None = None
    exchange: str = "binanceusdm"
    host: str = "127.0.0.1"
    port: int = 8700
    paper_equity: Decimal = Decimal("100000")
    paper_walk_s: float | None = None  # the embedded venue's marks follow a seeded price path
    reconcile_interval_s: float = 2.0
    max_snapshot_age_s: float = 15.0
    # Optional TCP listener for the operator plane (HOST, PORT); requires the operator token.
    operator_listen: tuple[str, int] | None = None
    # ccxt venue: use the exchange's sandbox / demo environment.
    sandbox: bool = False
    # Slowloris defence (gateway.listener): seconds to deliver a request head; open connections.
    header_timeout_s: float = HEADER_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS


LIVE_ACKNOWLEDGEMENT = "I understand this gateway sends real orders with real money to a live broker account"
_PAPER_HOSTS = {"paper-api.alpaca.markets"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_live(options: ServeOptions) -> bool:
    """Is the upstream a live account? Fails safe: anything not known to be paper or local is live."""
    from urllib.parse import urlparse

    if options.venue == "paper":
        return False
    if options.venue == "alpaca":
        host = urlparse(options.upstream_url).hostname if options.upstream_url else "paper-api.alpaca.markets"
        return host not in _PAPER_HOSTS and host not in _LOOPBACK and not (host or "").startswith("127.")
    if options.sandbox:
        return False
    host = urlparse(options.upstream_url).hostname if options.upstream_url else None
    return host is None or (host not in _LOOPBACK and not host.startswith("127."))


def audit_failure_reason(home: Home) -> str:
    return (
        "audit log unavailable (a write or fsync failed): trading is locked, and stays locked across "
        f"restarts. To recover: fix the disk under {home.audit_dir}, restart the gateway, check "
        f"`gatewayctl audit verify --home {home.root}`, then `gatewayctl unlock --home {home.root} --reason ...`"
    )


def _consume(future) -> None:
    """Retrieve a fire-and-forget audit result so a failure is not reported as unhandled."""
    if not future.cancelled():
        future.exception()


def read_config(home: Home):
    """The typed gateway.json (gateway.config); unknown keys and bad values refuse the start."""
    if not home.config.exists():
        raise StartupError(f"{home.root} is not a gateway home (no {home.config.name}); run `gatewayctl init {home.root}`")
    try:
        return load_config(home.config)
    except ConfigError as exc:
        raise StartupError(f"refusing to start: {exc}") from None


class Gateway:
    """Every part of one running gateway."""

    def __init__(self, home: Home, options: ServeOptions):
        self.home = home
        self.options = options
        self.config = read_config(home)
        problems = loose_permissions(home)
        if problems:
            raise StartupError("refusing to start: secret files are readable by others:\n  " + "\n  ".join(problems))
        try:
            self.vault = Vault.open(home)
        except VaultError as exc:
            raise StartupError(f"refusing to start: {exc}") from None
        self.clients = BotCredentials(
            home, self.vault, on_auth_failure=self._auth_failed, on_revoked_use=self._revoked_key_used
        )
        self.broker_keys = BrokerKeys(self.vault)
        self.policy_store = PolicyStore(home)
        try:
            self.active_policy = self.policy_store.load_active()
        except PolicyRefused as exc:
            raise StartupError(f"refusing to start without a valid signed policy: {exc}") from None
        self.control = TradingControl(home.state)
        if home.audit_checkpoints.exists() and not home.audit_signing_key.exists():
            raise StartupError(
                f"{home.audit_signing_key} is missing but the log has signed checkpoints; restore the key "
                "(a new one would hide a rewritten log)"
            )
        if (
            home.audit_signing_key.exists()
            and home.audit_log.exists()
            and home.audit_log.stat().st_size > 0
            and last_checkpoint(home.audit_checkpoints) is None
        ):
            # Extending the log now would sign a checkpoint over whatever it holds: a rewritten,
            # re-hashed log whose checkpoints were deleted would then verify.
            raise StartupError(
                f"{home.audit_checkpoints} is missing or empty but the log has records and a checkpoint key exists: "
                f"the log may have been rewritten. Restore the checkpoints from your off-box copy and run "
                f"`gatewayctl audit verify --home {home.root}`; only if the log is known good, "
                f"`gatewayctl audit checkpoint --home {home.root}` re-anchors it"
            )
        self.audit = AuditLog(
            home.audit_log,
            on_failure=self._audit_failed,
            checkpoint_key=load_or_create_checkpoint_key(home.audit_signing_key),
            checkpoint_path=home.audit_checkpoints,
        )
        self._require_live_acknowledgement()
        self.venue = self._build_venue()
        self.metrics = GatewayMetrics()
        self.portfolio = Portfolio()
        self.engine = RiskEngine(self.portfolio, EngineConfig(max_snapshot_age_s=options.max_snapshot_age_s))
        self.pipeline = RiskGateway(
            self.venue,
            engine=self.engine,
            control=self.control,
            audit=self.audit,
            policy=self.current_policy,
            scopes=self.clients.scopes_of,
            asset_classes=self.clients.asset_classes_of,
            reconcile_interval_s=options.reconcile_interval_s,
            on_decision=self.metrics.on_decision,
            guards=self._build_guards(),
            breakers=LossBreakers(home.breakers),
            alert=AlertWebhook(self.config.webhook_url, self.config.gateway_id),
        )
        self.metrics.attach(self)
        self._mount_dashboard()
        self._runners: list[web.AppRunner] = []
        self._instance_lock: int | None = None
        self._tasks: list[asyncio.Task] = []
        self.broker_countdown = None  # gateway.guards.broker_countdown, started with the venue
        self.bound_port: int | None = None
        self.operator_url: str | None = None

    # -- parts -----------------------------------------------------------------------------

    def _mount_dashboard(self) -> None:
        """Fills into the audit log (for P&L attribution) and the dashboard's data service."""
        from .admin.dashboard.service import DashboardService
        from .admin.fills import FillRecorder, fills_from_log

        recorder = FillRecorder(self.audit.submit)
        recorder.seed(fills_from_log(self.home.audit_log))
        self.pipeline.ledger.listeners.append(recorder)
        self.dashboard = DashboardService(self)

    def install_policy(self, active) -> None:
        """Switch policies: one assignment, so a decision sees the old or the new, never a mix."""
        self.active_policy = active

    def current_policy(self):
        """The policy decisions are made under; None once it has expired (fail closed)."""
        active = self.active_policy
        if active.policy.expires <= utcnow():
            return None
        return active

    def _build_venue(self) -> Venue:
        name = self.options.venue
        if name == "paper":
            from .venues.paper import PaperVenue
            from .venues.paper_engine import PaperEngine

            engine = PaperEngine(starting_equity=self.options.paper_equity, seed_marks=True)
            return PaperVenue(engine, walk_every_s=self.options.paper_walk_s)
        if name == "alpaca":
            from .venues.alpaca import AlpacaVenue

            self._require_broker_key("alpaca")
            kwargs = {"base_url": self.options.upstream_url} if self.options.upstream_url else {}
            return AlpacaVenue(lambda: self.broker_keys.get("alpaca"), **kwargs)
        if name == "ccxt":
            from .venues.ccxt import CcxtVenue

            self._require_broker_key("ccxt")
            urls = {"api": self.options.upstream_url} if self.options.upstream_url else None
            try:
                return CcxtVenue(
                    self.options.exchange, lambda: self.broker_keys.get("ccxt"), urls=urls, sandbox=self.options.sandbox
                )
            except ValueError as exc:
                raise StartupError(f"cannot use the ccxt venue: {exc}") from None
        raise StartupError(f"unknown venue {name!r}; choose one of {', '.join(VENUES)}")

    def _require_broker_key(self, venue: str) -> None:
        try:
            self.broker_keys.get(venue)
        except BrokerKeyMissing:
            raise StartupError(
                f"no broker key for the {venue} venue; store one with "
                f"`gatewayctl broker-keys set --home {self.home.root} --venue {venue} --key-id ID` (secret on stdin)"
            ) from None

    def _build_guards(self) -> list:
        """Safeguards from gateway.json (each declares its options). The rejection-burst guard
        ships on; turning it off takes an explicit `"rejection_burst": "off"`."""
        from .guards.dead_man import DeadMansSwitch
        from .guards.rejection_burst import RejectionBurst

        self.rejection_burst = RejectionBurst.from_options(self.config.rejection_burst, on_suspend=self._suspended)
        guards: list = [self.rejection_burst] if self.rejection_burst is not None else []
        if self.config.dead_man_switch_s is not None:
            guards.append(DeadMansSwitch(
                self.config.dead_man_switch_s, self._cancel_for_dead_man, self._order_is_open, self._dead_man_fired
            ))
        return guards

    def _suspended(self, key_id: str, reason: str) -> None:
        log.warning("credential %s suspended: %s", key_id, reason)
        self.audit.submit("key.suspended", {"key_id": key_id, "reason": reason}).add_done_callback(_consume)

    async def _cancel_for_dead_man(self, order_id: str) -> None:
        await self.venue.cancel_order(order_id)

    async def _order_is_open(self, order_id: str) -> bool:
        return (await self.venue.get_order(order_id)).status.is_open

    async def _dead_man_fired(self, key_id: str, canceled: list[str]) -> None:
        await self.audit.append("deadman.fired", {"key_id": key_id, "canceled": canceled})
        self.pipeline.reconciler.soon()

    def _require_live_acknowledgement(self) -> None:
        """Trading real money must be a conscious choice written into the home's config by the
        operator; no command writes it."""
        if not is_live(self.options):
            return
        if self.config.live_trading_acknowledgement != LIVE_ACKNOWLEDGEMENT:
            raise StartupError(
                f"refusing to trade against a live upstream ({self.options.venue} "
                f"{self.options.upstream_url or 'default endpoint'}) without an acknowledgement: add "
                f'"live_trading_acknowledgement": "{LIVE_ACKNOWLEDGEMENT}" to {self.home.config}'
            )

    def _auth_failed(self, key_id: str, remote: str | None, reason: str) -> None:
        """Every refused credential is recorded. An unknown key id is attacker-supplied text (it
        may even be a secret pasted into the wrong header): only a hash of it is kept."""
        if reason.startswith("unknown key id") or not key_id.startswith("GK"):
            key_id = "unknown:" + hashlib.sha256(key_id.encode()).hexdigest()[:12]
        data = {"key_id": key_id, "remote": remote, "reason": reason}
        try:
            self.audit.submit("auth.failure", data).add_done_callback(_consume)
        except Exception:  # the audit itself is down: it has already locked the gateway
            log.warning("could not record an authentication failure")

    def _revoked_key_used(self, key_id: str, remote: str | None) -> None:
        """A request proved it holds a revoked credential (its secret or a correct signature):
        the key has leaked. Merely naming a revoked key id never gets here."""
        if self.config.lockdown_on_revoked_key_use:
            self.control.set(TradingState.LOCKED, f"revoked credential {key_id} was used from {remote}", "gateway")

    def _audit_failed(self, exc: BaseException) -> None:
        # Never trade unrecorded: the audit log is broken, so nothing may be forwarded. The lock
        # is also written to the state file, so it holds across a restart (a restart must not
        # resume trading on a disk that lost records); the reason says how to come back.
        log.error("audit log failed; locking down")
        self.control.pin(TradingState.LOCKED, audit_failure_reason(self.home))

    def bot_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/health", self._health)
        mount_alpaca(app, self.pipeline, self.clients)
        mount_data_streams(app, self.pipeline, self.clients)  # Alpaca's market data websockets
        from .dialects.binance_futures import mount_binance_futures  # /fapi and /sapi

        self.binance = mount_binance_futures(app, self.pipeline, self.clients)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        state = self.control.current
        body = {
            "status": "ok",
            "state": state.state.value,
            "policy_version": self.active_policy.version,
            "venue": self.options.venue,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._hold_instance_lock()
        note = await self.audit.start()
        await self.venue.start()
        await self.audit.append(
            "gateway.start",
            {
                "venue": self.options.venue,
                "policy_version": self.active_policy.version,
                "policy_hash": self.active_policy.sha256,
                "state": self.control.state.value,
                "recovery": note,
            },
        )
        journal = await asyncio.to_thread(_read_journal, self.home.audit_log)
        await self.pipeline.start(journal)
        from .guards.state_webhook import StateWebhook

        runners = [guard.run() for guard in self.pipeline.guards]
        if self.config.webhook_url is not None:
            runners.append(StateWebhook(self.config.webhook_url, self.control, self.config.gateway_id).run())
        self.broker_countdown = self._build_broker_countdown()
        if self.broker_countdown is not None:
            runners.append(self.broker_countdown.run())
        self._tasks = [asyncio.create_task(run) for run in runners]
        self.dashboard.start()

    def _build_broker_countdown(self):
        """The exchange-side dead man's switch (Binance countdownCancelAll), on a ccxt venue
        whose exchange has one, unless gateway.json says ``"broker_countdown_s": "off"``."""
        from .guards.broker_countdown import BrokerCountdown

        seconds = self.config.broker_countdown_s
        if seconds == "off" or not getattr(self.venue, "has_countdown", False):
            return None
        return BrokerCountdown(self.venue, self._traded_symbols, seconds)

    def _traded_symbols(self) -> set[str]:
        """Symbols with an open order in the ledger or a position."""
        symbols = {order.symbol for order in self.pipeline.ledger.open_orders()}
        symbols.update(s for s, book in self.portfolio.books.items() if book.position_qty != 0)
        return symbols

    async def listen(self) -> None:
        from .admin.api import admin_app

        limit_log_rate()
        cap = connection_cap(self.options.max_connections)
        bot = guarded_runner(self.bot_app())
        await bot.setup()
        site = GuardedTCPSite(
            bot, self.options.host, self.options.port, max_connections=cap, header_timeout_s=self.options.header_timeout_s
        )
        await site.start()
        self._runners.append(bot)
        sockets = site.sockets
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.options.port

        admin = web.AppRunner(admin_app(self), access_log=None)
        await admin.setup()
        path = self.home.operator_socket
        if path.exists():
            path.unlink()
        old_umask = os.umask(0o077)  # the socket is created owner-only
        try:
            await web.UnixSite(admin, str(path)).start()
        finally:
            os.umask(old_umask)
        self._runners.append(admin)
        if self.options.operator_listen is not None:
            token = self.home.operator_token.read_bytes().strip()
            remote = guarded_runner(admin_app(self, token=token))
            await remote.setup()
            operator_site = GuardedTCPSite(
                remote, *self.options.operator_listen, max_connections=cap, header_timeout_s=self.options.header_timeout_s
            )
            await operator_site.start()
            self._runners.append(remote)
            bound = operator_site.sockets[0].getsockname() if operator_site.sockets else self.options.operator_listen
            host = bound[0] if ":" not in bound[0] else f"[{bound[0]}]"
            self.operator_url = f"http://{host}:{bound[1]}"  # shown by `gatewayctl dashboard`

    def _hold_instance_lock(self) -> None:
        """One gateway per home: two would keep separate books and together pass any limit."""
        fd = os.open(self.home.root / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(f"another gateway is already running on {self.home.root}") from None
        self._instance_lock = fd

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.dashboard.stop()
        await self.pipeline.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        try:
            await self.audit.append("gateway.stop", {"state": self.control.state.value})
        except Exception:
            pass
        await self.audit.close()
        await self.venue.close()
        try:
            self.home.operator_socket.unlink()
        except FileNotFoundError:
            pass
        if self._instance_lock is not None:
            os.close(self._instance_lock)  # closing the descriptor releases the lock
            self._instance_lock = None

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.bound_port or self.options.port}"


async def run(home: Home, options: ServeOptions, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    gateway = Gateway(home, options)
    await gateway.start()
    try:
        await gateway.listen()
        print(f"gateway ready on {gateway.base_url} (venue {options.venue}, policy v{gateway.active_policy.version}, "
              f"state {gateway.control.state.value}); operator socket {home.operator_socket}", flush=True)
        if ready is not None:
            ready.set()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await gateway.stop()


def serve(home_path: str | Path, options: ServeOptions) -> None:
    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(Home.at(home_path), options))


def _read_journal(path):
    """The ledger's journal: the audit log read once at start (see ledger/journal.py)."""
    from .audit.verify import iter_records
    from .ledger.journal import read_journal

    return read_journal(iter_records(path))
