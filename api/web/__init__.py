"""The HTTP edge: the web process and everything a request meets before and after Flask.

- ``server.py``: the web process (``python -m api.web``, the Procfile's web line), granian
  configured from the environment;
- ``edge.py``: the WSGI layer around Flask: request head limits, request bodies, the access
  log, and the last resort for an exception that escapes the app;
- ``request_bodies.py``: bodies received whole to their Content-Length, with a grace, slots
  for slow ones and a deadline, which ``connections.py`` enforces on the sockets themselves;
- ``access_log.py``: the access line, and the masking and escaping that keep every log safe.
"""

from .edge import init_app

__all__ = ["init_app"]
