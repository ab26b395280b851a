"""The Reunite service: HTTP API, web pages, database, workers and command line.

One folder per domain (auth, organisations, records, cases, reviews, audit), each
with its ORM models, pydantic schemas, service functions and thin routes; the
Celery app and tasks under `worker`; server-rendered pages under `web`; Alembic
migrations under `migrations`; and the `reunite` command line in `cli`. It imports
`matching` and `vetting`, which never import it.
"""
