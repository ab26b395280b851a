"""Organisations: applications, vetting decisions, suspension, the denylist, user management."""
