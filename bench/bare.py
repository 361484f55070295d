"""The floor: a bare Flask app with one JSON route, counting nothing and storing nothing.

``gunicorn bare:app`` (run from bench/) is the conventional floor; ``python -m bench.bare``
serves it with granian exactly as the web process serves the service (``api/web/server.py``), the
floor that the server alone allows.
"""

import functools

from flask import Flask

app = Flask(__name__)


@app.get("/")
def data():
    """The same body the service's /api?data=1 answers, at the least cost Flask allows."""
    return {"type": "Data", "content": "Yay! Request successful!"}


def serve():
    """granian with the web process's settings, from the same environment, serving this app."""
    from api.config import Config
    from api.web import server

    loader = functools.partial(server.load_in_worker, app)
    server.build_server(vars(Config())).serve(target_loader=loader)


if __name__ == "__main__":
    serve()
