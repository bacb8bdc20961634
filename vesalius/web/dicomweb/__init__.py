"""DICOMweb (PS3.18): QIDO-RS, WADO-RS, STOW-RS, WADO-URI, and DELETE, over the archive."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from vesalius.archive import Archive
from vesalius.dicom.keys import Level
from vesalius.web.dicomweb import manage, qido, stow, wado
from vesalius.web.dicomweb.common import Handler, endpoint

_ST = "/studies/{study}"
_SE = _ST + "/series/{series}"
_IN = _SE + "/instances/{instance}"


def dicomweb_routes(archive: Archive, root: str = "/dicom-web") -> list[BaseRoute]:
    """The DICOMweb resources of PS3.18 Table 10.1-1 under ``root``, and WADO-URI at /wado."""

    def ep(fn: Callable[..., Awaitable[Response]], **kw: Any) -> Handler:
        return endpoint(functools.partial(fn, **kw) if kw else fn, archive)

    def q(level: Level) -> Handler:
        return ep(qido.search, level=level)

    routes = [
        # QIDO-RS (10.6)
        Route("/studies", q(Level.STUDY), methods=["GET"]),
        Route("/series", q(Level.SERIES), methods=["GET"]),
        Route("/instances", q(Level.IMAGE), methods=["GET"]),
        Route(_ST + "/series", q(Level.SERIES), methods=["GET"]),
        Route(_ST + "/instances", q(Level.IMAGE), methods=["GET"]),
        Route(_SE + "/instances", q(Level.IMAGE), methods=["GET"]),
        # STOW-RS (10.5)
        Route("/studies", ep(stow.store), methods=["POST"]),
        Route(_ST, ep(stow.store), methods=["POST"]),
        # WADO-RS (10.4)
        Route(_ST, ep(wado.retrieve), methods=["GET"]),
        Route(_SE, ep(wado.retrieve), methods=["GET"]),
        Route(_IN, ep(wado.retrieve), methods=["GET"]),
        Route(_ST + "/metadata", ep(wado.metadata), methods=["GET"]),
        Route(_SE + "/metadata", ep(wado.metadata), methods=["GET"]),
        Route(_IN + "/metadata", ep(wado.metadata), methods=["GET"]),
        Route(_IN + "/bulk/{tag}", ep(wado.bulkdata), methods=["GET"]),
        Route(_IN + "/frames/{frames}", ep(wado.frames), methods=["GET"]),
        Route(_ST + "/rendered", ep(wado.rendered), methods=["GET"]),
        Route(_SE + "/rendered", ep(wado.rendered), methods=["GET"]),
        Route(_IN + "/rendered", ep(wado.rendered), methods=["GET"]),
        Route(_IN + "/frames/{frames}/rendered", ep(wado.rendered), methods=["GET"]),
        Route(_ST + "/thumbnail", ep(wado.rendered, thumbnail=True), methods=["GET"]),
        Route(_SE + "/thumbnail", ep(wado.rendered, thumbnail=True), methods=["GET"]),
        Route(_IN + "/thumbnail", ep(wado.rendered, thumbnail=True), methods=["GET"]),
        Route(_IN + "/frames/{frames}/thumbnail", ep(wado.rendered, thumbnail=True), methods=["GET"]),
        # DELETE (not in PS3.18; as dcm4chee and Orthanc)
        Route(_ST, ep(manage.delete), methods=["DELETE"]),
        Route(_SE, ep(manage.delete), methods=["DELETE"]),
        Route(_IN, ep(manage.delete), methods=["DELETE"]),
    ]
    return [Mount(root, routes=routes), Route("/wado", ep(manage.wado_uri), methods=["GET"])]
