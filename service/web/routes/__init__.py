"""The page routers: every module in this package that defines `router` is mounted, by name order.

One module per area (auth, applications, records, cases, reviews, org_admin,
platform_admin, audit, ...). Each builds its router with `service.web.pages.page_router()`
and marks every route `page_permission(Action.X)`, `photo_permission(Action.X)` or
`PUBLIC`, like the API.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def page_routers() -> list[APIRouter]:
    routers = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers
