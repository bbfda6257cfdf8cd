"""Placeholder until this function's issue lands: answers every route with an OpenAI-style 501."""

from __future__ import annotations

from fastapi import FastAPI, Request
from mangum import Mangum

from paywalls import web

app = web.install(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_yet(request: Request) -> None:
    raise web.ApiError(501, f"{request.url.path} is not available yet", code="not_implemented")


handler = Mangum(app, lifespan="off")
