"""`/blobs/{token}`: LocalStore's signed download route (S3 stores hand out presigned URLs).

The token is a capability: it names one object and its download name, and works without the
session header until it expires. A forged, altered, expired or garbled token is a 404 that never
repeats the token (it may be someone else's link).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from chat_app.api.deps import ServicesDep
from chat_app.api.problems import problem_responses
from chat_app.storage.signing import content_disposition

router = APIRouter(tags=["files"])

BLOB_HEADERS = {
    # Served as an opaque attachment: the browser neither renders nor sniffs it.
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@router.get(
    "/blobs/{token}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file's bytes, as an attachment.",
            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}},
        },
        **problem_responses(404, 422, 500, 503),
    },
)
def download_blob(token: str, services: ServicesDep) -> StreamingResponse:
    """Stream the object a valid, unexpired download token names (404 otherwise)."""
    blob = services.signer.verify(token)
    chunks = services.store.open(blob.key)  # ObjectNotFound (404) once the file is deleted
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={**BLOB_HEADERS, "Content-Disposition": content_disposition(blob.filename)},
    )
