"""placeholder"""

from fastapi import APIRouter

from app.evaluation import service as evaluation  # noqa: F401

router = APIRouter(include_in_schema=False)
