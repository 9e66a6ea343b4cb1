"""Course plumbing: chapter set-up, the results ledger, charts, live controls, exercise checks, showing source."""
