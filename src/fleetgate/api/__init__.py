"""The management API: projects, CA certificates, devices and state over HTTP.

Routes and JSON shapes follow Golioth's management API, so scripts
written for it work against Fleetgate with another base URL and key.

- :mod:`.app`: :func:`create_app`, the FastAPI application;
- :mod:`.auth`: API keys and the project each one reaches;
- :mod:`.errors`: every failure as ``{"code", "message"}``;
- :mod:`.schemas`: request and response bodies;
- :mod:`.routes`: one router per resource;
- :mod:`.server`: uvicorn inside ``fleetgate serve``'s event loop.
"""

from fleetgate.api.app import create_app

__all__ = ["create_app"]
