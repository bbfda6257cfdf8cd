"""Dev-only routes of the local stack, mounted under /_dev by devserver (never in template.yaml)."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/_dev/")
def index() -> dict[str, object]:
    return {"object": "dev", "local_only": True, "routes": sorted(r.path for r in app.routes)}  # type: ignore[attr-defined]
