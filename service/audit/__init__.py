"""The tamper-evident audit trail: hash-chained events, signed checkpoints, exports."""
