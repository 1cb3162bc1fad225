"""The medicine catalog: administrators edit it, physicians search it while prescribing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from contracts import records as rec
from gateway.deps import relay, rpc_request, signed
from gateway.security import Caller

router = APIRouter(prefix="/catalog", tags=["catalog"])
caller = Depends(signed())


@router.get("/medicines", response_model=rec.MedicineList)
async def search(
    request: Request,
    prefix: str = Query(default="", max_length=100),
    type: rec.MedicineType | None = Query(default=None),
    include_retired: bool = Query(default=False),
    limit: int = Query(default=20, ge=1, le=100),
    who: Caller = caller,
) -> Response:
    """By prefix of the name or the active ingredient (any case), and/or by type."""
    query = rec.SearchMedicinesRequest(
        prefix=prefix, type=type, include_retired=include_retired, limit=limit
    )
    return await relay(request, who, rec.SEARCH_MEDICINES, query)


@router.post("/medicines", response_model=rec.Medicine, status_code=201)
async def add(body: rec.AddMedicineRequest, request: Request, who: Caller = caller) -> Response:
    return await relay(request, who, rec.ADD_MEDICINE, body)


@router.get("/medicines/{medicine_id}", response_model=rec.Medicine)
async def get(medicine_id: str, request: Request, who: Caller = caller) -> Response:
    return await relay(
        request, who, rec.GET_MEDICINE, rpc_request(rec.GetMedicineRequest, medicine_id=medicine_id)
    )


class Details(BaseModel):
    details: rec.MedicineDetails


@router.put("/medicines/{medicine_id}", response_model=rec.Medicine)
async def update(
    medicine_id: str, body: Details, request: Request, who: Caller = caller
) -> Response:
    """Edit an entry; prescriptions already signed keep the details they copied."""
    return await relay(
        request,
        who,
        rec.UPDATE_MEDICINE,
        rpc_request(rec.UpdateMedicineRequest, medicine_id=medicine_id, details=body.details),
    )


@router.post("/medicines/{medicine_id}/retire", response_model=rec.Medicine)
async def retire(medicine_id: str, request: Request, who: Caller = caller) -> Response:
    """No new prescriptions of it; existing ones are unaffected."""
    return await relay(
        request,
        who,
        rec.RETIRE_MEDICINE,
        rpc_request(rec.RetireMedicineRequest, medicine_id=medicine_id),
    )
