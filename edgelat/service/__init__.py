"""``edgelat serve``: a workspace's predictions over HTTP (FastAPI on uvicorn) and a page for people.

- :mod:`edgelat.service.app`: the application (routes under ``/v1``, the page at ``/``), built by
  :func:`create_app` for one workspace.
- :mod:`edgelat.service.views`: what a workspace holds, as plain data, for the routes and the page.
- :mod:`edgelat.client`: the Python client, with the shapes of :func:`edgelat.predict` and
  :func:`edgelat.predict_many`.
"""

from __future__ import annotations

from edgelat.service.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
