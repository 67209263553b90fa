"""Runtime safeguards around the order pipeline, one concern per file (see base.Guard)."""
