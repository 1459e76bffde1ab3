"""OpenAPI 3.1 description of the service, built from ``params.PARAMS`` (so it cannot drift)."""

from __future__ import annotations

from . import params as P


def _schema(p: P.Param) -> dict:
    if p.kind == "bool":
        s = {"type": "boolean"}
    elif p.kind == "int":
        s = {"type": "integer", "minimum": p.minimum, "maximum": p.maximum}
    elif p.kind == "choice":
        s = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "color":
        s = {"type": "string", "pattern": r"^\d{1,3},\d{1,3},\d{1,3}(,\d{1,3})?$", "example": "255,255,255,255"}
    else:
        s = {"type": "string"}
    if p.default is not None:
        s["default"] = p.default
    return s


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def spec(prefix: str = "/cutout", limits=None) -> dict:
    params = [{"name": p.name, "in": "query", "required": False, "schema": _schema(p),
               "description": p.description + (" (rembg-compatible)" if p.rembg else "")} for p in P.PARAMS]
    form_props = {p.name: {**_schema(p), "description": p.description} for p in P.PARAMS}
    lim = ""
    if limits is not None:
        lim = (f" Limits on this server: {limits.max_bytes / (1 << 20):.0f} MB per file, "
               f"{limits.max_pixels / 1e6:.0f} megapixels per image, {limits.max_files} files per batch, "
               f"{limits.max_pending} requests at once.")
    errors = {
        "400": _error("bad or unknown parameter, corrupt image, empty upload, unknown model, malformed multipart "
                      "body (malformed_multipart)"),
        "404": _error("model not installed on this server"),
        "413": _error("file too large, request too large (never above ComfyUI's upload limit unless configured), "
                      "too many pixels, files or parts, or the server's temp folder is full (temp_folder_full)"),
        "415": _error("the upload is not an image"),
        "422": _error("the model is an ONNX file that is not a segmentation network (model_incompatible)"),
        "503": _error("busy: too many requests being read or waiting, or ComfyUI kept running prompts "
                      "(see Retry-After)"),
    }

    def body(many: bool) -> dict:
        file_schema = {"type": "string", "format": "binary"}
        return {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": file_schema} if many else file_schema, **form_props},
                "required": ["file"]}},
            **({} if many else {"image/*": {"schema": file_schema}, "application/octet-stream": {"schema": file_schema}}),
        }}

    image_out = {"image/png": {"schema": {"type": "string", "format": "binary"}},
                 "image/webp": {"schema": {"type": "string", "format": "binary"}},
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ComfyUI-Cutout service", "version": "1",
                 "description": "Background removal inside ComfyUI, on the same shared model sessions as the nodes. "
                                "Parameters follow rembg's server (`rembg s`) where they mean the same thing; they "
                                "may be sent in the query string or as multipart form fields. Unknown parameters "
                                "are refused." + lim},
        "paths": {
            f"{prefix}/api/remove": {"post": {
                "summary": "Cut out one image",
                "description": "Send one image (multipart field `file`, or the raw body with an image Content-Type). "
                               "Returns an RGBA PNG of the same size (alpha = subject), the mask with om=true, or "
                               "an opaque image with a background colour.",
                "parameters": params, "requestBody": body(False),
                "responses": {"200": {"description": "the cut-out", "content": image_out}, **errors}},
                "get": {"summary": "Not offered (rembg's ?url= form)",
                        "description": "Always 405: fetching images from URLs would let callers reach the network "
                                       "through ComfyUI. POST the image instead.",
                        "responses": {"405": _error("use POST")}}},
            f"{prefix}/api/batch": {"post": {
                "summary": "Cut out several images, get a zip",
                "description": "Send several multipart `file` fields; the zip holds one result per file, named after "
                               "the upload (`photo.jpg` -> `photo.png`), in upload order.",
                "parameters": params, "requestBody": body(True),
                "responses": {"200": {"description": "zip of the results",
                                      "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                              **errors}}},
            f"{prefix}/api/models": {"get": {
                "summary": "Models: installed, loaded, downloadable",
                "responses": {"200": {"description": "the model list", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "default": {"type": "string"}, "allow_download": {"type": "boolean"},
                        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}}}}}}},
            f"{prefix}/api/openapi.json": {"get": {"summary": "This description",
                                                   "responses": {"200": {"description": "OpenAPI 3.1 JSON"}}}},
            f"{prefix}/": {"get": {"summary": "The upload page (HTML)", "responses": {"200": {"description": "HTML"}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string", "description": "machine-readable code, e.g. unknown_parameter"},
                "message": {"type": "string", "description": "what went wrong, for people"},
                "valid": {"type": "array", "items": {"type": "string"}, "description": "valid values, when relevant"}}},
            "Model": {"type": "object", "properties": {
                "name": {"type": "string"}, "installed": {"type": "boolean"}, "embedded": {"type": "boolean"},
                "loaded": {"type": "boolean"}, "downloadable": {"type": "boolean"}, "size_mb": {"type": "number"},
                "family": {"type": "string"}, "description": {"type": "string"}}},
        }},
    }
