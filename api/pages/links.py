"""Links on pages, built once: ``url_for`` for templates, remembered per script root.

A page carries the same links for every request (the navigation, the stylesheet, the
OpenAPI document), and building each with Werkzeug's URL map costs more than the rest of a
small page. A link depends only on the endpoint, its values and the script root the app is
mounted under (``X-Forwarded-Prefix`` behind a trusted proxy), so it is kept under those.
External URLs, which depend on the request's Host, are built every time.
"""

from flask import current_app, request, url_for

# A script root comes from a trusted proxy, but the memory still has a bound.
MAX_LINKS = 1024


def page_url_for(endpoint, **values):
    """Flask's ``url_for``, remembered for links that depend only on the script root."""
    if any(name.startswith("_") for name in values):
        return url_for(endpoint, **values)
    links = current_app.extensions["page_links"]
    key = (request.script_root, endpoint, *sorted(values.items()))
    try:
        return links[key]
    except KeyError:
        if len(links) >= MAX_LINKS:
            links.clear()
        link = links[key] = url_for(endpoint, **values)
        return link


def init_app(app):
    """Templates build their links with ``page_url_for``."""
    app.extensions["page_links"] = {}
    app.jinja_env.globals["url_for"] = page_url_for
