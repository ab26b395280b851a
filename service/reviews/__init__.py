"""Human review of candidates: the queue, two-person confirmation, notifications."""
