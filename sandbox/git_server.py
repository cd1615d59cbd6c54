"""A git server on loopback for the sandbox's GitOps engine: `git http-backend` (Debian's git) behind a small
threaded HTTP server, fetch and push, one bare repository per region (`<root>/<name>.git`).

Every request must carry the server's token, as HTTP basic auth (any user name, the token as password: what
Flux's GitRepository `secretRef` sends) or as `Authorization: Bearer <token>` (what pitstop's git access sends).

    python -m pitstop.sandbox.git_server --root DIR --token-file FILE [--port P]   # serves until interrupted
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
DEFAULT_BRANCH = "main"
_CGI_TIMEOUT = 60.0


def _authorized(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip(), token)
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password, token)
    return False


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, plain or chunked (git sends large pushes chunked)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class GitServer:
    """`git http-backend` over HTTP on 127.0.0.1, in a thread of this process (stop with `close`)."""

    def __init__(self, root: Path, *, token: str | None = None, port: int = 0) -> None:
        if not os.access(HTTP_BACKEND, os.X_OK):
            raise RuntimeError(f"{HTTP_BACKEND} is missing: install Debian's `git` package")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token or secrets.token_urlsafe(24)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server._serve(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                server._serve(self, _read_body(self))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="git-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def create_repo(self, name: str) -> Path:
        """A bare repository `<name>.git` (default branch `main`, pushes allowed); existing ones are kept."""
        path = self.root / f"{name}.git"
        if not (path / "HEAD").exists():
            subprocess.run(["git", "init", "--bare", "--quiet", f"--initial-branch={DEFAULT_BRANCH}", str(path)],
                           check=True, timeout=30)
            subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True, timeout=30)
        return path

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if not _authorized(handler.headers.get("Authorization"), self.token):
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="pitstop sandbox git"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        path, _, query = handler.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "pitstop-sandbox",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
        }
        try:
            done = subprocess.run([str(HTTP_BACKEND)], input=body, env=env, capture_output=True, timeout=_CGI_TIMEOUT)
        except subprocess.TimeoutExpired:
            handler.send_error(504, "git http-backend timed out")
            return
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="git http-backend on 127.0.0.1 for the sandbox's GitOps engine")
    parser.add_argument("--root", type=Path, required=True, help="directory of bare repositories")
    parser.add_argument("--token-file", type=Path, required=True, help="the token clients must send (created if absent)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.token_file.exists():
        args.token_file.write_text(secrets.token_urlsafe(24))
        args.token_file.chmod(0o600)
    server = GitServer(args.root, token=args.token_file.read_text().strip(), port=args.port)
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

