// The operator's dashboard. Plain JS, no build step. Every value from the server is set with
// textContent (never innerHTML): bots choose symbols and client ids, so they are untrusted text.
"use strict";

const PAGE = 50;
let csrf = null;
let decisionsOffset = 0;
let ordersOffset = 0;
let refreshQueued = false;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    if (cell instanceof Node) { const td = el("td"); td.appendChild(cell); tr.appendChild(td); }
    else tr.appendChild(el("td", cell === null || cell === undefined ? "" : cell));
  }
  return tr;
}

function fill(tbodyParent, rows) {
  const tbody = tbodyParent.querySelector("tbody");
  tbody.replaceChildren(...rows);
}

async function api(path, options = {}) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options);
  if (opts.method === "POST") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = csrf;
  }
  const resp = await fetch("/dashboard/api/" + path, opts);
  if (resp.status === 401) { window.location.reload(); throw new Error("logged out"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

function renderState(state) {
  const node = $("state");
  node.textContent = state.state;
  node.className = "state " + state.state.toLowerCase();
  $("state-detail").textContent = (state.reason ? state.reason + " — " : "") + "by " + state.actor + " at " + state.since;
}

function renderLimits(limits, equity) {
  $("equity").textContent = "equity " + equity;
  const out = [];
  for (const limit of limits) {
    const box = el("div", null, "limit" + (limit.kind === "per order" ? " per-order" : ""));
    box.appendChild(el("span", limit.name, "name"));
    const bar = el("div", null, "bar");
    const inner = el("div", null, "fill");
    if (limit.ratio !== undefined) {
      const pct = Math.min(limit.ratio, 1) * 100;
      inner.style.width = pct.toFixed(1) + "%";
      const danger = limit.kind === "min" ? limit.ratio < 1.1 : limit.ratio > 0.8;
      if (danger) inner.classList.add("warn");
    }
    bar.appendChild(inner);
    box.appendChild(bar);
    const value = limit.kind === "per order" ? "per order" : (limit.value === null ? "—" : limit.value);
    box.appendChild(el("span", value + (limit.kind === "min" ? " ≥ " : " / ") + limit.limit, "value"));
    if (limit.symbols && limit.symbols.length) {
      const list = el("div", null, "symbols");
      for (const s of limit.symbols) list.appendChild(el("span", s.symbol + " " + s.value));
      box.appendChild(list);
    }
    out.push(box);
  }
  $("limits").replaceChildren(...out);
}

function dl(node, pairs) {
  const out = [];
  for (const [k, v] of pairs) { out.push(el("dt", k)); out.push(el("dd", v === null || v === undefined ? "—" : v)); }
  node.replaceChildren(...out);
}

function renderPolicy(policy) {
  dl($("policy"), [["version", policy.version], ["sha256", policy.sha256], ["signers", policy.signers.join(", ")], ["expires", policy.expires]]);
  const out = [];
  for (const h of policy.history) {
    const box = el("details", null, "policy-version");
    box.appendChild(el("summary", "v" + h.version + (h.sha256 ? " " + h.sha256.slice(0, 12) : "") + (h.error ? " — " + h.error : "")));
    if (h.changes) {
      if (!h.changes.length) box.appendChild(el("p", "no changes"));
      const ul = el("ul");
      for (const c of h.changes) ul.appendChild(el("li", c.name + ": " + c.old + " → " + c.new + " (" + c.direction + (c.reason ? ", " + c.reason : "") + ")", "diff-" + c.direction));
      box.appendChild(ul);
    }
    out.push(box);
  }
  $("policy-history").replaceChildren(...out);
}

function pct(rate) { return rate === null ? "—" : (Number(rate) * 100).toFixed(1) + "%"; }

function renderBots(bots, pnl) {
  fill($("bots"), bots.map((b) => {
    const p = pnl.by_bot[b.key_id] || { realized: "0", unrealized: "0", win_rate: null };
    return row([b.key_id, b.label, b.status, b.orders_today, b.refusals_today, b.suspended || "no", p.realized, p.unrealized, pct(p.win_rate)]);
  }));
  fill($("pnl-symbols"), pnl.by_bot_symbol.map((t) => row([t.bot, t.symbol, t.realized, t.unrealized, t.trades, pct(t.win_rate), t.open_qty])));
  fill($("pnl-links"), pnl.links.slice(-100).reverse().map((l) => row([l.symbol, l.qty, l.entry.bot + " @ " + l.entry.price, l.exit.bot + " @ " + l.exit.price, l.pnl])));
}

function setOptions(select, values) {
  const current = select.value;
  const options = [el("option", "all")];
  options[0].value = "";
  for (const v of values) { const o = el("option", v); o.value = v; options.push(o); }
  select.replaceChildren(...options);
  select.value = values.includes(current) ? current : "";
}

async function loadOverview() {
  const o = await api("overview");
  renderState(o.state);
  renderLimits(o.limits, o.equity);
  fill($("positions"), o.positions.map((p) => row([p.symbol, p.asset_class, p.qty, p.mark, p.notional, p.protected_qty])));
  renderBots(o.bots, o.pnl);
  renderPolicy(o.policy);
  dl($("audit"), [["records", o.audit.records], ["intact", o.audit.broken ? "NO (writes failed)" : "yes"],
    ["last checkpoint", o.audit.last_checkpoint ? "#" + o.audit.last_checkpoint.seq + " at " + o.audit.last_checkpoint.ts : "none"]]);
  dl($("venue"), [["venue", o.venue.name], ["stream", o.venue.stream],
    ["last reconcile", o.venue.last_reconcile_ago_s === null ? "never" : o.venue.last_reconcile_ago_s + " s ago"],
    ["reconcile error", o.venue.last_reconcile_error], ["uncertain orders", o.venue.uncertain_orders],
    ["upstream requests, last minute", o.venue.budget.limit_per_min === null ? o.venue.budget.used_last_min
      : o.venue.budget.used_last_min + " of " + o.venue.budget.limit_per_min + " (bot reads refused: " + o.venue.budget.refused_reads + ")"]]);
  setOptions($("filter-bot"), o.bots.map((b) => b.key_id));
  setOptions($("filter-code"), o.codes);
  const stamp = Date.now();
  $("equity-chart").src = "/dashboard/api/charts/equity.svg?t=" + stamp;
  $("exposure-chart").src = "/dashboard/api/charts/exposure.svg?t=" + stamp;
}

async function loadOrders() {
  const page = await api("orders?offset=" + ordersOffset + "&limit=" + PAGE);
  $("orders-total").textContent = page.total + " open";
  fill($("orders"), page.items.map((o) => {
    const tr = row([o.client_order_id, o.bot, o.symbol, o.side, o.type, o.qty, o.filled_qty, o.limit_price, o.stop_price,
      o.protective ? "gateway stop" : o.role, o.status]);
    if (o.protective) tr.className = "protective";
    return tr;
  }));
  $("orders-page").textContent = page.total ? (ordersOffset + 1) + "–" + Math.min(ordersOffset + PAGE, page.total) : "";
}

async function loadDecisions() {
  const bot = $("filter-bot").value, code = $("filter-code").value;
  const q = new URLSearchParams({ offset: decisionsOffset, limit: PAGE });
  if (bot) q.set("bot", bot);
  if (code) q.set("code", code);
  const page = await api("decisions?" + q.toString());
  $("decisions-total").textContent = page.total + " recorded";
  fill($("decisions"), page.items.map((d) => {
    const tr = row([d.ts.replace("T", " ").slice(0, 23), d.bot, d.action, d.symbol, d.side, d.qty, d.decision, d.codes.join(", "), d.message]);
    tr.className = d.decision === "deny" ? "deny" : "allow";
    tr.dataset.seq = d.seq;
    return tr;
  }));
  $("decisions-page").textContent = page.total ? (decisionsOffset + 1) + "–" + Math.min(decisionsOffset + PAGE, page.total) : "";
}

async function refreshAll() {
  await Promise.all([loadOverview(), loadOrders(), loadDecisions()]);
}

function scheduleRefresh() {
  // Many changes in a burst (a fill moves the ledger and writes records) make one refresh.
  if (refreshQueued) return;
  refreshQueued = true;
  setTimeout(() => { refreshQueued = false; refreshAll().catch(showError); }, 150);
}

function showError(err) { $("control-message").textContent = String(err.message || err); }

function listen() {
  const source = new EventSource("/dashboard/api/events");
  source.addEventListener("change", (event) => {
    $("live").className = "live up";
    const data = JSON.parse(event.data);
    renderState(data.state);
    scheduleRefresh();
  });
  source.onerror = () => { $("live").className = "live down"; };
  source.onopen = () => { $("live").className = "live up"; };
}

function wire() {
  const form = $("lockdown-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    if (!reason) { showError("a reason is required"); return; }
    const opts = ["reduce_only", "cancel_open", "flatten"].filter((n) => form.elements[n].checked);
    $("lockdown-summary").textContent = "Lock down (" + (opts.length ? opts.join(", ") : "LOCKED") + "): " + reason + "?";
    $("lockdown-confirm").hidden = false;
  });
  $("lockdown-cancel").addEventListener("click", () => { $("lockdown-confirm").hidden = true; });
  $("lockdown-confirm-button").addEventListener("click", async () => {
    $("lockdown-confirm").hidden = true;
    const body = { reason: form.elements.reason.value.trim() };
    for (const n of ["reduce_only", "cancel_open", "flatten"]) body[n] = form.elements[n].checked;
    try {
      const result = await api("lockdown", { method: "POST", body: JSON.stringify(body) });
      renderState(result.state);
      $("control-message").textContent = "Locked down.";
      form.reset();
      scheduleRefresh();
    } catch (err) { showError(err); }
  });
  const unlockForm = $("unlock-form");
  unlockForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = unlockForm.elements.unlock_reason.value.trim();
    if (!reason) { showError("a reason is required"); return; }
    try {
      const result = await api("unlock", { method: "POST", body: JSON.stringify({ reason }) });
      renderState(result.state);
      $("control-message").textContent = "Unlocked.";
      unlockForm.reset();
      scheduleRefresh();
    } catch (err) { showError(err); }
  });
  $("verify").addEventListener("click", async () => {
    $("verify-result").textContent = "verifying…";
    try {
      const r = await api("verify", { method: "POST", body: "{}" });
      $("verify-result").textContent = r.ok ? "intact: " + r.records + " records, " + r.checkpoints + " checkpoints" : "BROKEN: " + r.error;
    } catch (err) { $("verify-result").textContent = String(err.message || err); }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("../logout", { method: "POST", body: "{}" }); } finally { window.location.reload(); }
  });
  $("filter-bot").addEventListener("change", () => { decisionsOffset = 0; loadDecisions().catch(showError); });
  $("filter-code").addEventListener("change", () => { decisionsOffset = 0; loadDecisions().catch(showError); });
  $("decisions-next").addEventListener("click", () => { decisionsOffset += PAGE; loadDecisions().catch(showError); });
  $("decisions-prev").addEventListener("click", () => { decisionsOffset = Math.max(0, decisionsOffset - PAGE); loadDecisions().catch(showError); });
  $("orders-next").addEventListener("click", () => { ordersOffset += PAGE; loadOrders().catch(showError); });
  $("orders-prev").addEventListener("click", () => { ordersOffset = Math.max(0, ordersOffset - PAGE); loadOrders().catch(showError); });
}

async function main() {
  csrf = (await api("session")).csrf;
  wire();
  await refreshAll();
  listen();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", () => { main().catch(showError); });
