"""The cut-out service: a rembg-compatible HTTP API and an upload page under ``/cutout/``.

Plain aiohttp (no ComfyUI import): ``register()`` adds the routes to ComfyUI's server via
``comfy_glue.register_routes`` (a no-op outside ComfyUI); ``api.mount(app)`` puts them on
any aiohttp app. aiohttp is imported only when the routes are registered.
"""

from __future__ import annotations

import logging

log = logging.getLogger("comfyui_cutout")

_service = None


def register() -> bool:
    """Register the routes on ComfyUI's PromptServer (once). False outside ComfyUI.

    ``CUTOUT_SERVICE=0`` in the environment turns the page and the API off (the nodes stay).
    """
    import os

    from .. import comfy_glue

    if os.environ.get("CUTOUT_SERVICE", "1").strip().lower() in ("0", "false", "no", "off"):
        log.info("Cutout: HTTP service off (CUTOUT_SERVICE=0)")
        return False

    def add(table):
        global _service
        from .api import CutoutService

        if _service is None:
            _service = CutoutService()
            _service.add_to(table)
            log.info("Cutout: service at %s/ (API %s/api/remove)", _service.prefix, _service.prefix)

    try:
        return comfy_glue.register_routes(add)
    except Exception:  # the nodes must load even if the service cannot
        log.exception("Cutout: the HTTP service could not be registered; the nodes work without it")
        return False
