"""An HTTP gateway on loopback: /v1/* becomes an API Gateway proxy event for the authorizer and
API handlers; /objects serves uploads and downloads through signed single-object grants
(fma.local.objects); everything else is the dashboard from web/ (plus a generated config.json)."""

from __future__ import annotations

import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from fma.local import dispatch
from fma.local.objects import pointer_reply

MAX_BODY = 10 << 20  # API Gateway's payload limit
WEB_DIR = Path(__file__).resolve().parents[3] / "web"
PLACEHOLDER = b"<!doctype html><title>FMA</title><h1>FMA local mode</h1><p>The dashboard is not built.</p>"


class GatewayHandler(BaseHTTPRequestHandler):
    server_version = "fma-local"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:  # quiet by default
        pass

    def version_string(self) -> str:
        """`Server: fma-local`, without the interpreter version the standard library appends."""
        return self.server_version

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _api(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            body = json.dumps({"error": {"code": "PAYLOAD_TOO_LARGE", "message": f"body exceeds {MAX_BODY} bytes",
                                         "details": {}}}).encode()
            return self._send(413, {"Content-Type": "application/json"}, body)
        body = self.rfile.read(length) if length else None
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query)) or None
        call_api = self.server.api or dispatch.call_api  # type: ignore[attr-defined]
        result = call_api(self.command, url.path, dict(self.headers.items()), body, query)
        self._send(result.status, result.headers, result.body)

    def _static(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            return self._send(200, {"Content-Type": "application/json"}, json.dumps({"apiUrl": "/v1"}).encode())
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (WEB_DIR / rel).resolve()
        if WEB_DIR.resolve() not in target.parents or not target.is_file():
            if rel == "index.html":
                return self._send(200, {"Content-Type": "text/html"}, PLACEHOLDER)
            return self._send(404, {"Content-Type": "text/plain"}, b"not found")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, {"Content-Type": ctype, "Cache-Control": "no-cache"}, target.read_bytes())

    def _objects(self) -> None:
        routes = self.server.objects  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        if routes is None:
            return self._send(404, {"Content-Type": "text/plain"}, b"not found")
        if self.command == "POST" and url.path == "/objects":
            status, headers, body = routes.upload(query, self.headers, self.rfile.read)
            if status >= 400:  # the body may not have been read: do not reuse the connection
                self.close_connection = True
            return self._send(status, headers, body)
        if self.command == "PUT" and url.path == "/objects/parts":
            status, headers, body = routes.put_part(query, self.headers, self.rfile.read)
            if status >= 400:
                self.close_connection = True
            return self._send(status, headers, body)
        if self.command in ("GET", "HEAD") and url.path.startswith("/objects/"):
            return self._send(*routes.download(url.path, query))
        self._send(405, {"Content-Type": "text/plain"}, b"method not allowed")

    def _pointer(self, path: str) -> None:
        routes = self.server.objects  # type: ignore[attr-defined]
        if routes is None:
            return self._send(404, {"Content-Type": "text/plain"}, b"not found")
        self._send(*pointer_reply(routes.store, path, self.headers.get("If-None-Match")))

    def _route(self) -> None:
        try:
            path = urlsplit(self.path).path
            if path == "/objects" or path.startswith("/objects/"):
                self._objects()
            elif path.startswith("/pointers/") and self.command in ("GET", "HEAD"):
                self._pointer(path)
            elif path.startswith("/v1/"):
                self._api()
            elif self.command in ("GET", "HEAD"):
                self._static()
            else:
                self._send(405, {"Content-Type": "text/plain"}, b"method not allowed")
        except Exception:
            body = json.dumps({"error": {"code": "INTERNAL", "message": "gateway error", "details": {}}}).encode()
            self._send(500, {"Content-Type": "application/json"}, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _route


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 resets connections under a burst of clients
    daemon_threads = True


class Gateway:
    """Binds on construction (so its URL is known before the stores that sign grants for it)."""

    def __init__(self, host: str, port: int):
        self.httpd = _Server((host, port), GatewayHandler)
        self.httpd.objects = None  # type: ignore[attr-defined]
        self.httpd.api = None  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fma-gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, objects: object | None = None, api: object | None = None) -> None:
        """`api`: how /v1 requests run (worker processes); in this process if None."""
        self.httpd.objects = objects  # type: ignore[attr-defined]
        self.httpd.api = api  # type: ignore[attr-defined]
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
