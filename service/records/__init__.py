"""Consented gallery records of missing children: creation, consent, withdrawal (erasure)."""
