"""The notebook client: ``skyweave.Client("http://host:port", token=...)`` talks to a
``skyweave server`` with the methods of the embedded ``Client`` (``remote/client.py``); results
come back as ``RemoteProduct``s (``remote/product.py``); progress and waiting follow the server's
event stream (``remote/events.py``).  Needs the ``remote`` extra (httpx, tqdm)."""
