"""The demo sandbox: sample organisations, accounts, records and a case, so a newcomer sees a match at once."""
