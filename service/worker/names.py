"""Task and queue names, the words producers and workers agree on.

A leaf module: it imports nothing from the service, so the dispatcher, the Celery app,
the tasks and the reaper can all name a task without importing one another.
"""

EMBED_QUEUE = "embed"  # photos to embed: CPU-heavy, loads the face models
SEARCH_QUEUE = "search"  # searches, re-queueing, webhooks, maintenance: short and light

PROCESS_RECORD_PHOTO = "reunite.process_record_photo"
PROCESS_CASE = "reunite.process_case"
SEARCH_CASE = "reunite.search_case"
REEMBED_BATCH = "reunite.reembed_batch"  # re-embedding the gallery with another model, one batch per message
REAP = "reunite.reap"
MAINTENANCE = "reunite.maintenance"
RETRY_WEBHOOKS = "reunite.retry_webhooks"

# Which queue each task goes to.
ROUTES = {
    PROCESS_RECORD_PHOTO: EMBED_QUEUE,
    PROCESS_CASE: EMBED_QUEUE,
    REEMBED_BATCH: EMBED_QUEUE,
    SEARCH_CASE: SEARCH_QUEUE,
    REAP: SEARCH_QUEUE,
    MAINTENANCE: SEARCH_QUEUE,
    RETRY_WEBHOOKS: SEARCH_QUEUE,
}
