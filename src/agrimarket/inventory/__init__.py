"""Stock levels, the movement ledger, reservations."""
