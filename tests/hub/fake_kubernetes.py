"""An in-process fake of the few Kubernetes API endpoints the kubernetes spawner calls.

A Starlette app served by uvicorn on loopback, speaking the real REST paths
(``/apis/apps/v1/namespaces/{ns}/statefulsets``, ``/api/v1/namespaces/{ns}/
services``, ``secrets``, ``persistentvolumeclaims``): list (with a
``labelSelector`` of ``k=v`` terms), create (409 AlreadyExists), get (404),
replace, merge patch and delete, each answered with the JSON a real API
server gives (objects with ``metadata.uid`` and ``resourceVersion``, ``List``
objects, ``Status`` errors). Creating a StatefulSet does what its controller
would for a claim template: it creates ``<template>-<name>-0`` unless that
PVC exists; deleting it leaves the PVC (a ``Retain`` policy). ``calls``
records every request, so tests can see what the spawner asked for.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import socket
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["FakeKubernetes"]

#: (API prefix, plural) -> (apiVersion, kind)
KINDS = {
    ("apis/apps/v1", "statefulsets"): ("apps/v1", "StatefulSet"),
    ("api/v1", "services"): ("v1", "Service"),
    ("api/v1", "secrets"): ("v1", "Secret"),
    ("api/v1", "persistentvolumeclaims"): ("v1", "PersistentVolumeClaim"),
}


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


class FakeKubernetes:
    """``async with FakeKubernetes() as api:`` serves on ``api.url`` until the block ends."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        """(plural, namespace, name) -> object."""
        self.calls: list[tuple[str, str]] = []
        """(method, path) of every request, in order."""
        self.fail_next: list[int] = []
        """Status codes to answer the next requests with (a flaky API server)."""
        self._versions = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        routes = []
        for (prefix, plural), _ in KINDS.items():
            base = f"/{prefix}/namespaces/{{ns}}/{plural}"
            routes.append(
                Route(base, self._collection(plural), methods=["GET", "POST"]),
            )
            routes.append(
                Route(
                    base + "/{name}",
                    self._item(plural),
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                )
            )
        self.app = Starlette(routes=routes)

    # ---- test views ----

    def names(self, plural: str, namespace: str = "canistry") -> list[str]:
        return sorted(n for (p, ns, n) in self.objects if p == plural and ns == namespace)

    def get(self, plural: str, name: str, namespace: str = "canistry") -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    # ---- handlers ----

    def _kind(self, plural: str) -> tuple[str, str]:
        for (_, p), kind in KINDS.items():
            if p == plural:
                return kind
        raise KeyError(plural)

    def _collection(self, plural: str) -> Any:
        async def handle(request: Request) -> JSONResponse:
            ns = request.path_params["ns"]
            self.calls.append((request.method, request.url.path))
            if self.fail_next:
                return _status(self.fail_next.pop(0), "InternalError", "injected failure")
            api_version, kind = self._kind(plural)
            if request.method == "GET":
                selector = request.query_params.get("labelSelector", "")
                items = [
                    obj
                    for (p, n, _), obj in sorted(self.objects.items())
                    if p == plural
                    and n == ns
                    and _matches(obj["metadata"].get("labels") or {}, selector)
                ]
                return JSONResponse(
                    {
                        "apiVersion": api_version,
                        "kind": f"{kind}List",
                        "metadata": {"resourceVersion": str(next(self._versions))},
                        "items": items,
                    }
                )
            obj = json.loads(await request.body())
            name = obj["metadata"]["name"]
            if (plural, ns, name) in self.objects:
                return _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
            meta = obj["metadata"]
            meta.update(
                namespace=ns,
                uid=str(uuid.uuid4()),
                resourceVersion=str(next(self._versions)),
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            self.objects[(plural, ns, name)] = obj
            if plural == "statefulsets":
                self._claims(ns, obj)
            return JSONResponse(obj, status_code=201)

        return handle

    def _claims(self, ns: str, sts: dict[str, Any]) -> None:
        """What the StatefulSet controller does for pod 0: a PVC per claim template."""
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            claim = f"{template['metadata']['name']}-{sts['metadata']['name']}-0"
            if ("persistentvolumeclaims", ns, claim) not in self.objects:
                self.objects[("persistentvolumeclaims", ns, claim)] = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim,
                        "namespace": ns,
                        "uid": str(uuid.uuid4()),
                        "labels": dict(template["metadata"].get("labels") or {}),
                    },
                    "spec": copy.deepcopy(template["spec"]),
                }

    def _item(self, plural: str) -> Any:
        async def handle(request: Request) -> JSONResponse:
            ns, name = request.path_params["ns"], request.path_params["name"]
            self.calls.append((request.method, request.url.path))
            if self.fail_next:
                return _status(self.fail_next.pop(0), "InternalError", "injected failure")
            key = (plural, ns, name)
            current = self.objects.get(key)
            if current is None:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            if request.method == "GET":
                return JSONResponse(current)
            if request.method == "DELETE":
                del self.objects[key]
                return JSONResponse(
                    {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
                )
            body = json.loads(await request.body())
            if request.method == "PUT":
                body["metadata"].update(
                    namespace=ns,
                    uid=current["metadata"]["uid"],
                    creationTimestamp=current["metadata"].get("creationTimestamp"),
                )
                updated = body
            else:
                updated = copy.deepcopy(current)
                _merge(updated, body)
            updated["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[key] = updated
            return JSONResponse(updated)

        return handle

    # ---- lifecycle ----

    async def __aenter__(self) -> FakeKubernetes:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
