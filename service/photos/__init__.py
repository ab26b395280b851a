"""Photos of records and cases: encrypted storage, face embeddings and the index change log."""
