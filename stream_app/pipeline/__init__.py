"""The worker: the Faust application with its agents and pages, start-up checks, and the probes
(liveness, readiness, lag, rebalances)."""
