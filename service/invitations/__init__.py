"""Invitations: an organisation admin invites a colleague, who chooses their own password."""
