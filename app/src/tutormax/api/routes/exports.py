"""CSV exports: request (runs in Celery), poll, download."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from tutormax.api.deps import Res
from tutormax.api.errors import CONFLICT, NOT_FOUND, UNAVAILABLE
from tutormax.domain import Export, ExportRequest
from tutormax.services import exports

router = APIRouter(prefix="/api/exports", tags=["exports"], responses=UNAVAILABLE)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Export)
async def request_export(r: Res, body: ExportRequest, response: Response) -> Export:
    """Ask for a CSV export; poll its URL (Location) until status is done, then download it."""
    export = await exports.request_export(r, body)
    response.headers["Location"] = f"/api/exports/{export.id}"
    return export


@router.get("/{export_id}", response_model=Export, responses=NOT_FOUND)
async def get_export(r: Res, export_id: uuid.UUID) -> Export:
    """An export's status."""
    return await exports.get_export(r, export_id)


@router.get(
    "/{export_id}/download",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The CSV"},
        **NOT_FOUND,
        **CONFLICT,
    },
)
async def download_export(r: Res, export_id: uuid.UUID) -> Response:
    """The CSV of a finished export (409 while it is still being built)."""
    data = await exports.export_content(r, export_id)
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tutormax-export-{export_id}.csv"'},
    )
