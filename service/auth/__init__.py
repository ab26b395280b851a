"""Accounts and sign-in: users and roles, passwords (argon2), TOTP, access and refresh tokens."""
