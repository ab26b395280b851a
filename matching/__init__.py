"""Pure face and vector code for Reunite.

Everything that turns photo bytes into faces, faces into embeddings and embeddings
into ranked candidates lives here: safe image decoding (`images`), detection,
quality and embedding (`faces`), the FAISS vector index (`index`), candidate
ranking (`search`) and threshold calibration (`calibration`). This package never
imports FastAPI, SQLAlchemy or Celery, so it can be tested, benchmarked and reused
without a database, a broker or a web server; `service` calls into it, never the
other way round.
"""
