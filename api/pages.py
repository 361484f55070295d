"""The pages people read in a browser: the index and the docs."""

from flask import Blueprint, current_app, render_template

from . import catalogue, counting

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """The landing page: what this is, the live hit count, and where to read more."""
    return render_template("index.html", hits=counting.current_hits())


@bp.get("/docs")
def docs():
    """The reference: every endpoint, both ways to send a token, and every status."""
    return render_template(
        "docs.html",
        kinds=catalogue.KINDS.values(),
        token_prefix=current_app.config["TOKEN_PREFIX"],
    )


def init_app(app):
    """Mount the pages beside the API."""
    app.register_blueprint(bp)
