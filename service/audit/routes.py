"""Audit API routes (thin: the logic is in service.py)."""

from fastapi import APIRouter

router = APIRouter(tags=["audit"])
