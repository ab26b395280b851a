"""Embedding models in service: which one is active, re-embedding the gallery, the switch-over.

Embeddings, index entries and calibrations are kept per model id; a re-embedding job
embeds the stored photos with another model in the background and makes it the
active one only when every photo is done, so a better model is adopted without
downtime (`reunite match reembed`). The batches themselves run in the worker
(service.worker.reembed).
"""
