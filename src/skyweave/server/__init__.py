"""``skyweave server``: the HTTP API over a store and bus (``server/app.py``), its tokens
(``server/tokens.py``) and its live run events (``server/events.py``).

Importing this package loads nothing heavy: FastAPI is imported by ``server.app`` only.
"""
