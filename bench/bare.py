"""The floor: a bare Flask app with one JSON route, counting nothing and storing nothing."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def data():
    """The same body the service's /api?data=1 answers, at the least cost Flask allows."""
    return {"type": "Data", "content": "Yay! Request successful!"}
