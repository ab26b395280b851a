"""Pure governance policy for Reunite.

Who may do what (roles to permissions), the organisation vetting state machine,
the law-enforcement exclusion (refused organisation types and the denylist of
law-enforcement domains) and re-vetting expiry live here as plain Python, with no
HTTP and no ORM, so that every rule can be read in one place and tested on its own.
The service enforces these rules; it never re-implements them.
"""
