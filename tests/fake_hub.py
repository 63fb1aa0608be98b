"""A Hugging Face Hub stand-in on 127.0.0.1, speaking the endpoints huggingface_hub and transformers call.

Just enough of the real protocol for honest end-to-end tests without a network: repositories with
visibility and bearer-token access, branches, one git-like commit per `create_commit` (NDJSON body, files
sent inline because preupload answers uploadMode "regular"), model info, and file resolution with the
X-Repo-Commit / ETag headers and the X-Error-Code values (RepoNotFound, RevisionNotFound, EntryNotFound)
that huggingface_hub turns into its typed errors. Every request is logged in `FakeHub.requests`.

    with FakeHub(token="hf_test") as hub:      # hub.url -> set HF_ENDPOINT to it
        ...
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml


@dataclass
class Commit:
    oid: str
    message: str
    description: str
    parent: str | None
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)

    def history(self, revision: str = "main") -> list[Commit]:
        commit, out = self.resolve(revision), []
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


def _oid(*parts: bytes) -> str:
    return hashlib.sha1(b"".join(parts)).hexdigest()


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def validate_yaml_metadata(content: str) -> str | None:
    """The server-side card check: front matter parses to a mapping and its typed fields have the Hub's types."""
    if not content.startswith("---"):
        return None  # a card without metadata is accepted by the Hub
    try:
        front = content.split("---", 2)[1]
        meta = yaml.safe_load(front)
    except (IndexError, yaml.YAMLError) as error:
        return f"Invalid YAML in README.md: {error}"
    if not isinstance(meta, dict):
        return "README.md metadata must be a YAML mapping"
    for key in ("license", "pipeline_tag", "library_name"):
        if key in meta and not isinstance(meta[key], str):
            return f'"{key}" must be a string'
    for key in ("tags", "datasets", "metrics"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(t, str) for t in meta[key])):
            return f'"{key}" must be an array of strings'
    for entry in meta.get("model-index") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return '"model-index[].name" must be a string'
        for result in entry.get("results") or []:
            if not isinstance(result.get("task", {}).get("type"), str):
                return '"model-index[].results[].task.type" is required'
            dataset = result.get("dataset") or {}
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                return '"model-index[].results[].dataset" needs type and name'
            for metric in result.get("metrics") or []:
                if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float, str)):
                    return '"model-index[].results[].metrics[]" needs type and value'
    return None


class FakeHub:
    """In-memory Hub served from a background thread on an ephemeral loopback port."""

    def __init__(self, token: str = "hf_fake_token", user: str = "org") -> None:
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle
    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- state
    def create_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        repo = Repo(repo_id, private)
        root = Commit(_oid(repo_id.encode(), b"init"), "initial commit", "", None,
                      {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        repo.commits[root.oid] = root
        repo.branches["main"] = root.oid
        self.repos[repo_id] = repo
        return repo

    def commit(self, repo: Repo, branch: str, message: str, description: str, changes: dict[str, bytes | None]) -> Commit:
        parent = repo.resolve(branch)
        files = dict(parent.files) if parent else {}
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
        oid = _oid((parent.oid if parent else "").encode(), message.encode(),
                   *[p.encode() + c for p, c in sorted(files.items())])
        commit = Commit(oid, message, description, parent.oid if parent else None, files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # --- helpers
    def _send(self, status: int, body: bytes = b"", *, headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data, **kw) -> None:
        self._send(status, json.dumps(data).encode(), **kw)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers=headers, head=head)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, head: bool = False, *, write: bool = False) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or ((repo.private or write) and not self._authorized()):
            # the Hub answers 401 RepoNotFound for both absent and private-without-access repos
            self._error(401 if not self._authorized() else 404, "RepoNotFound",
                        "Repository not found", head=head)
            return None
        return repo

    # --- routing
    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        parsed = urlparse(self.path)
        path, query = unquote(parsed.path), parse_qs(parsed.query)
        with self.hub.lock:
            self.hub.requests.append((method, self.path))
            try:
                self._dispatch(method, path, query)
            except Exception as error:  # a bug in the fake must show up in the test, not hang it
                self._error(500, None, f"fake hub error: {type(error).__name__}: {error}")

    def _dispatch(self, method: str, path: str, query: dict) -> None:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if method == "GET" and path == "/api/whoami-v2":
            if not self._authorized():
                return self._error(401, None, "Invalid credentials")
            return self._json(200, {"type": "user", "name": self.hub.user, "orgs": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if method == "GET" and (not rest or rest[0] == "revision"):
                return self._model_info(repo_id, "/".join(rest[1:]) or "main")
            if method == "POST" and rest[:1] == ["preupload"]:
                return self._preupload(repo_id)
            if method == "POST" and rest[:1] == ["commit"]:
                return self._commit(repo_id, "/".join(rest[1:]), query)
            if method == "POST" and rest[:1] == ["branch"]:
                return self._create_branch(repo_id, "/".join(rest[1:]))
            if method == "GET" and rest[:1] == ["commits"]:
                return self._list_commits(repo_id, "/".join(rest[1:]) or "main")
            if method == "PUT" and rest[:1] == ["settings"]:
                return self._settings(repo_id)
            if method == "GET" and rest[:1] == ["tree"]:
                return self._tree(repo_id, rest[1] if len(rest) > 1 else "main")
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self._error(404, None, f"fake hub: no route for {method} {path}", head=method == "HEAD")

    # --- endpoints
    def _create_repo(self) -> None:
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        if repo_id in self.hub.repos:  # the Hub still returns the url, which create_repo(exist_ok=True) reads
            message = "You already created this model repo"
            return self._json(409, {"error": message, "url": f"{self.hub.url}/{repo_id}"},
                              headers={"X-Error-Message": message})
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.hub.create_repo(repo_id, private=private)
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        problem = validate_yaml_metadata(payload.get("content", ""))
        if problem and "text/plain" in (self.headers.get("Accept") or ""):  # ModelCard.validate reads text
            return self._send(400, problem.encode(), content_type="text/plain")
        if problem:  # create_commit reads {"errors": [{"message": ...}]}
            return self._json(400, {"errors": [{"message": problem}], "warnings": []})
        self._json(200, {"errors": [], "warnings": []})

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(200, {
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
            "author": repo_id.split("/")[0], "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": name} for name in sorted(commit.files)],
        })

    def _preupload(self, repo_id: str) -> None:
        if self._repo(repo_id, write=True) is None:
            return
        payload = json.loads(self._body() or b"{}")
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                 for f in payload.get("files", [])]
        self._json(200, {"files": files, "commitOid": None})

    def _commit(self, repo_id: str, revision: str, query: dict) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), {})
        changes: dict[str, bytes | None] = {}
        for item in lines:
            if item["key"] == "file":
                value = item["value"]
                content = value["content"]
                changes[value["path"]] = base64.b64decode(content) if value.get("encoding") == "base64" \
                    else content.encode()
            elif item["key"] in ("deletedFile", "deletedFolder"):
                changes[item["value"]["path"]] = None
            elif item["key"] == "lfsFile":
                return self._error(400, None, "fake hub: LFS uploads are not supported (preupload says regular)")
        if query.get("create_pr"):
            return self._error(400, None, "fake hub: pull requests are not supported")
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        commit = self.hub.commit(repo, revision, header.get("summary", ""), header.get("description", ""), changes)
        self._json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit.oid}", "commitOid": commit.oid,
                         "pullRequestUrl": None, "success": True})

    def _create_branch(self, repo_id: str, branch: str) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if branch in repo.branches:
            return self._error(409, None, f"Reference already exists: refs/heads/{branch}")
        payload = json.loads(self._body() or b"{}")
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            return self._error(404, "RevisionNotFound", "Invalid starting point")
        repo.branches[branch] = start.oid
        self._json(200, {})

    def _settings(self, repo_id: str) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        payload = json.loads(self._body() or b"{}")
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        self._json(200, {"private": repo.private})

    def _list_commits(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.resolve(revision) is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(200, [{"id": c.oid, "title": c.message, "message": c.description, "authors": [],
                          "date": "2026-01-01T00:00:00.000Z"} for c in repo.history(revision)])

    def _tree(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(200, [{"type": "file", "path": name, "size": len(data), "oid": _git_blob_oid(data)}
                         for name, data in sorted(commit.files.items())])

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        head = method == "HEAD"
        repo = self._repo(repo_id, head=head)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        if filename not in commit.files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", head=head)
        content = commit.files[filename]
        etag = hashlib.sha256(content).hexdigest() if filename.endswith(".safetensors") else _git_blob_oid(content)
        self._send(200, content, head=head, content_type="application/octet-stream",
                   headers={"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"'})
