"""The operator's dashboard: a login-protected page on the operator plane's TCP listener.

- ``views``: JSON views of a running gateway (limits, positions, orders, bots, policy, audit).
- ``feed``: the decision feed, tailed from the audit log.
- ``history``: equity and exposure samples the gateway keeps, drawn as SVG.
- ``session``: login, session cookie, CSRF.
- ``app``: the aiohttp routes; ``local``: `gatewayctl dashboard` over the unix socket.
Static files (plain HTML/CSS/JS, no build step) are in ``static/``.
"""
