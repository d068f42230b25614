"""The points ledger: double entry, append-only, never overdrawn, idempotent, reversible, expiring, provable."""
