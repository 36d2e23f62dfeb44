"""The API description's browser page: ``GET /api/docs`` (Swagger UI, served from this server, in
``docs.py``); the description itself is flask-smorest's (``viralspot/api.py``)."""
