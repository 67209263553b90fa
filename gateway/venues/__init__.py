"""Upstream brokers behind one interface (see base.Venue)."""
