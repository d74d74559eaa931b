"""The server's front door: which requests reach MONAI Label's routes, and how they run.

MONAI Label serves every endpoint it has (model upload, sessions, DICOMweb proxy, dataset download, image
info writes, ...) to whoever can connect, and its CORS setting answers any web page (``*`` with
credentials). Its endpoints are ``async`` functions doing synchronous work, so one slow inference freezes
every other request. :class:`Guard`, an ASGI middleware put in front of the routes when the app starts:

- refuses what DeepMCAT does not need, with 403 and the reason (:data:`REFUSED`);
- refuses requests from a foreign web origin and requests naming a foreign host (a page open in the
  clinician's browser, DNS rebinding);
- refuses ``run_sync`` (training or scoring inside the server process), checks a train request's settings
  and an upload's declared size before anything is read;
- runs every request on a worker thread with an event loop of its own, the heavy ones (inference, labels,
  strategies) at most :data:`HEAVY_WORKERS` at a time, so ``/info`` answers while an upload is processed.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import anyio

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

#: heavy requests (decoding an upload, scoring images) processed at once; the others queue
HEAVY_WORKERS = 4
#: a train request's JSON body is a handful of settings
MAX_TRAIN_BODY = 64 * 1024
#: multipart framing on top of an upload's own size
UPLOAD_OVERHEAD = 2**20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Rule:
    """Requests whose method is in ``methods`` (any when empty) and whose path matches ``path``."""

    methods: frozenset[str]
    path: re.Pattern
    reason: str

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and bool(self.path.fullmatch(path))


def rule(methods: str, path: str, reason: str) -> Rule:
    return Rule(frozenset(methods.split()), re.compile(path), reason)


REFUSED = (
    rule("PUT DELETE", r"/model/[^/]+/?", "model files are published by training only (an uploaded model "
                                          "would replace the one every client is answered with)"),
    rule("", r"/session(/.*)?", "DeepMCAT uses no sessions"),
    rule("", r"/batch(/.*)?", "batch inference is not offered: categorise with /infer or run scoring"),
    rule("", r"/infer/wsi.*", "DeepMCAT has no whole-slide inference"),
    rule("", r"/proxy(/.*)?", "the DICOMweb proxy is not offered"),
    rule("", r"/ohif(/.*)?", "the OHIF viewer is not offered"),
    rule("POST", r"/reload/?", "reloading the app is not offered"),
    rule("GET", r"/datastore/dataset/?", "downloading the whole datastore is not offered"),
    rule("PUT", r"/datastore/(image/info|label/info|updatelabelinfo)/?",
         "image and label info are written by the server only (clients would forge scores)"),
    rule("PUT", r"/datastore/?", "use PUT /datastore/image"),
    rule("DELETE", r"/datastore/(image)?/?", "images are not removed through the server"),
)
UPLOADS = (rule("POST", r"/infer/.*", ""), rule("PUT", r"/datastore/(label|image)/?", ""))
HEAVY = (*UPLOADS, rule("POST", r"/activelearning/.*", ""))
NO_RUN_SYNC = (rule("POST", r"/(train|scoring)(/.*)?", ""),)
TRAIN = rule("POST", r"/train(/[^/]*)?", "")


@dataclass(frozen=True)
class Policy:
    """What the guard lets through: extra web origins (beyond the server's own), extra host names (beyond
    loopback and the address the server listens on), the upload limit, and a train settings check that
    raises ValueError naming the bad setting."""

    origins: frozenset[str]
    hosts: frozenset[str]
    max_upload_bytes: int
    check_train: Callable[[dict], None]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class Guard:
    def __init__(self, app, policy: Policy):
        self.app = app
        self.policy = policy
        self.heavy = anyio.CapacityLimiter(HEAVY_WORKERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        try:
            self._check(scope, method, path)
            if TRAIN.matches(method, path):
                receive = await self._checked_train_body(receive, path)
        except Refused as exc:
            await _answer(send, exc.status, exc.detail)
            return
        limiter = self.heavy if any(r.matches(method, path) for r in HEAVY) else None
        await _in_worker_thread(self.app, scope, receive, send, limiter)

    def _check(self, scope: Scope, method: str, path: str) -> None:
        headers = _headers(scope)
        host = headers.get("host", "")
        server_ip = (scope.get("server") or ("",))[0]
        if host and _hostname(host) not in LOOPBACK_HOSTS | {server_ip} | self.policy.hosts:
            raise Refused(403, f"host {_hostname(host)!r} is not served here (add it to the app's allowed_hosts)")
        origin = headers.get("origin")
        if origin and origin not in self.policy.origins and urlsplit(origin).netloc != host:
            raise Refused(403, f"requests from the web origin {origin!r} are refused "
                               "(MONAI_LABEL_CORS_ORIGINS lists the allowed ones)")
        for r in REFUSED:
            if r.matches(method, path):
                raise Refused(403, f"{method} {path} is disabled in the DeepMCAT app: {r.reason}")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(r.matches(method, path) for r in NO_RUN_SYNC) and _true(query.get("run_sync")):
            raise Refused(400, "run_sync is refused: training and scoring run in their own process")
        if method == "POST" and path.startswith("/infer/"):
            if any(query.get("session_id", [""])):
                raise Refused(400, "DeepMCAT uses no sessions: send an image id or a file")
            if not any(query.get("image", [""])) and "multipart/form-data" not in headers.get("content-type", ""):
                raise Refused(400, "send an image id (?image=ID) or a file (multipart 'file')")
        declared = headers.get("content-length", "")
        if any(r.matches(method, path) for r in UPLOADS) and declared.isdigit() \
                and int(declared) > self.policy.max_upload_bytes + UPLOAD_OVERHEAD:
            raise Refused(413, f"upload of {int(declared) / 2**20:.0f} MB exceeds the limit of "
                               f"{self.policy.max_upload_bytes / 2**20:.0f} MB (max_upload_mb)")

    async def _checked_train_body(self, receive: Receive, path: str) -> Receive:
        """Read a train request's JSON body (bounded), check its settings, and hand it on unchanged."""
        chunks, size = [], 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > MAX_TRAIN_BODY:
                raise Refused(413, f"a train request body is at most {MAX_TRAIN_BODY} bytes")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in chunks)
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:
            raise Refused(400, "a train request's body must be JSON settings") from None
        if not isinstance(params, dict):
            raise Refused(400, "a train request's body must be a JSON object of settings")
        one_model = path.rstrip("/") != "/train"  # POST /train/ takes {model: settings} for every model
        for settings in ([params] if one_model else [v for v in params.values() if isinstance(v, dict)]):
            try:
                self.policy.check_train(settings)
            except ValueError as exc:
                raise Refused(400, f"bad train setting: {exc}") from None
        replay = iter(chunks)

        async def replayed() -> dict:
            return next(replay, None) or await receive()

        return replayed


class Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _true(values: list[str] | None) -> bool:
    return bool(values) and values[-1].strip().lower() in ("1", "true", "yes", "on")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _in_worker_thread(app, scope: Scope, receive: Receive, send: Send,
                            limiter: anyio.CapacityLimiter | None) -> None:
    """Run the request on a worker thread in an event loop of its own; its receive and send calls go back
    to the server's loop."""
    main = asyncio.get_running_loop()

    async def thread_receive() -> dict:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(receive(), main))

    async def thread_send(message: dict) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(message), main))

    await anyio.to_thread.run_sync(asyncio.run, app(scope, thread_receive, thread_send), limiter=limiter)
