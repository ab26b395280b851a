"""Celery app and tasks: embedding photos, searching the gallery, the index replica, the reaper."""
