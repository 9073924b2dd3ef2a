"""The model control plane: versions, sticky routing, rollout, telemetry, canary analysis and its guard."""
