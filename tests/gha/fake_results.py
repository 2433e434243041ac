#!/usr/bin/env python3
"""A fake of GitHub's Actions results service and of the REST endpoints ferry's `gha://` store uses.

No real server for GitHub's cache and artifact services can be installed, so ferry tests
against this double instead. It is checked on every CI run by GitHub's own clients
(`@actions/cache`, `@actions/artifact`, octokit; see tests/gha/clients/) and its REST
answers against GitHub's published OpenAPI description: where they disagree, this file is
wrong. tests/gha/PROTOCOL.md is the reference for everything it serves; keep the two in step.

It serves, on one loopback port:
  POST /twirp/github.actions.results.api.v1.CacheService/{CreateCacheEntry,
       FinalizeCacheEntryUpload,GetCacheEntryDownloadURL}
  POST /twirp/github.actions.results.api.v1.ArtifactService/{CreateArtifact,
       FinalizeArtifact,ListArtifacts,GetSignedArtifactURL,DeleteArtifact}
  /repos/{owner}/{repo}/actions/caches[...] and /actions/artifacts[...], /runs/{id}/artifacts
  /_fake/...  the test-only admin API (jobs and tokens, faults, clock, config, state, reset)

Entries live in memory; their bytes live in a real Azure Blob implementation (Azurite):
the fake creates a container there and hands out service-SAS URLs signed with the account
key, so Azurite checks the uploads (Put Blob, Put Block, Put Block List), the signatures,
permissions and expiry, and serves ranged reads, exactly as Azure would.

Standard library only (Python 3.11).
"""

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from email.utils import formatdate

CACHE_SERVICE = "github.actions.results.api.v1.CacheService"
ARTIFACT_SERVICE = "github.actions.results.api.v1.ArtifactService"
AZURE_VERSION = "2021-08-06"
DOCS = "https://docs.github.com/rest/actions"

PERMISSION_READ = 1
PERMISSION_WRITE = 2
# ACTIONS_CACHE_MODE -> (permission on the job's own ref, permission on the other readable refs)
CACHE_MODES = {
    "write": (PERMISSION_READ | PERMISSION_WRITE, PERMISSION_READ),
    "read": (PERMISSION_READ, PERMISSION_READ),
    "write-only": (PERMISSION_WRITE, 0),
    "none": (0, 0),
}

DEFAULT_CONFIG = {
    # Seconds after FinalizeCacheEntryUpload before lookups see the entry (fake clock).
    "consistency_delay_seconds": 0,
    # GitHub's default repository cache limit; least recently used entries go first.
    "cache_limit_bytes": 10 * 1024**3,
    # Entries not read for this long are evicted (GitHub: 7 days).
    "cache_unused_ttl_seconds": 7 * 86400,
    # A reservation never finalized stops blocking its key after this long (GitHub: 24 h).
    "cache_reservation_ttl_seconds": 86400,
    # Lifetimes of the signed URLs, in real seconds (Azurite checks them on its own clock).
    "upload_url_ttl_seconds": 6 * 3600,
    "download_url_ttl_seconds": 3600,
    # REST artifact download redirects: GitHub documents one minute.
    "redirect_url_ttl_seconds": 60,
    "artifact_retention_days": 90,
    "artifacts_per_job": 500,
    "runtime_token_ttl_seconds": 6 * 3600,
    # Signed URLs name https-less <account>.blob.core.windows.net, reachable only through this
    # fake as an HTTP proxy (HTTP_PROXY), so clients take their Azure-only code paths.
    "azure_blob_host": False,
}


class TwirpError(Exception):
    STATUS = {
        "canceled": 408, "invalid_argument": 400, "malformed": 400, "deadline_exceeded": 408,
        "not_found": 404, "bad_route": 404, "already_exists": 409, "permission_denied": 403,
        "unauthenticated": 401, "resource_exhausted": 429, "failed_precondition": 412,
        "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500,
        "unavailable": 503, "dataloss": 500,
    }

    def __init__(self, code, msg, headers=None):
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.headers = code, msg, headers or {}

    @property
    def status(self):
        return self.STATUS[self.code]


class RestError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.headers = status, message, headers or {}


# --- small codecs -------------------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(ts):
    """Protobuf Timestamp JSON and GitHub REST dates: UTC with milliseconds and a Z."""
    d = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def parse_rfc3339(text):
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not m:
        raise TwirpError("malformed", f"invalid timestamp {text!r}")
    base = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    offset = dt.timezone.utc if m.group(3) == "Z" else dt.timezone(
        dt.timedelta(hours=int(m.group(3)[:3]), minutes=int(m.group(3)[0] + m.group(3)[4:])))
    frac = float(m.group(2) or 0)
    return base.replace(tzinfo=offset).timestamp() + frac


def field(body, name, default=None):
    """Protobuf JSON accepts the proto field name and its lowerCamelCase form."""
    if name in body:
        return body[name]
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
    return body.get(camel, default)


def as_str(body, name):
    v = field(body, name, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise TwirpError("malformed", f"field {name} must be a string")
    return v


def as_int64(value, name):
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise TwirpError("malformed", f"field {name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise TwirpError("malformed", f"field {name} must be an int64 (a JSON number or decimal string)")


def wrapped(value):
    """google.protobuf.StringValue / Int64Value: JSON is the bare value; tolerate {"value": v}."""
    if isinstance(value, dict):
        return value.get("value")
    return value


# --- Azure Blob (Azurite) -----------------------------------------------------------------


class Azure:
    """The fake's own calls to the blob service (Shared Key) and the SAS URLs it hands out."""

    def __init__(self, endpoint, account, key, container):
        self.endpoint = endpoint.rstrip("/")
        self.account = account
        self.key = base64.b64decode(key)
        self.container = container
        parsed = urllib.parse.urlsplit(self.endpoint)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.base_path = parsed.path  # /devstoreaccount1 on Azurite (path-style)
        self.azure_host = f"{account}.blob.core.windows.net"
        self.azure_style = False

    def blob_url(self, name):
        if self.azure_style:
            return f"http://{self.azure_host}/{self.container}/{urllib.parse.quote(name)}"
        return f"{self.endpoint}/{self.container}/{urllib.parse.quote(name)}"

    def forward(self, method, path_and_query, headers, body):
        """Passes a request for <account>.blob.core.windows.net on to Azurite, path-style."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, self.base_path + path_and_query, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def sas_url(self, name, permissions, expiry, content_disposition=None, content_type=None):
        """A service SAS for one blob (sr=b), signed as Azure documents for sv >= 2020-12-06."""
        se = dt.datetime.fromtimestamp(int(expiry), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        canonical = f"/blob/{self.account}/{self.container}/{name}"
        string_to_sign = "\n".join([
            permissions, "", se, canonical, "", "", "", AZURE_VERSION, "b", "", "",
            "", content_disposition or "", "", "", content_type or "",
        ])
        sig = base64.b64encode(hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
        query = [("sv", AZURE_VERSION), ("sr", "b"), ("sp", permissions), ("se", se)]
        if content_disposition:
            query.append(("rscd", content_disposition))
        if content_type:
            query.append(("rsct", content_type))
        query.append(("sig", sig))
        return self.blob_url(name) + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)

    def _request(self, method, path_and_query, body=b"", content_type=""):
        parsed = urllib.parse.urlsplit(path_and_query)
        date = formatdate(usegmt=True)
        canonical_resource = f"/{self.account}{parsed.path}"
        for k, v in sorted(urllib.parse.parse_qsl(parsed.query)):
            canonical_resource += f"\n{k.lower()}:{v}"
        length = str(len(body)) if body else ""
        string_to_sign = "\n".join([
            method, "", "", length, "", content_type, "", "", "", "", "", "",
            f"x-ms-date:{date}\nx-ms-version:{AZURE_VERSION}", canonical_resource,
        ])
        sig = base64.b64encode(hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
        headers = {"x-ms-date": date, "x-ms-version": AZURE_VERSION,
                   "Authorization": f"SharedKey {self.account}:{sig}", "Content-Length": str(len(body))}
        if content_type:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path_and_query, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
        finally:
            conn.close()

    def create_container(self):
        status, _, data = self._request("PUT", f"{self.base_path}/{self.container}?restype=container",
                                        content_type="application/octet-stream")
        if status not in (201, 409):
            raise RuntimeError(f"creating container {self.container}: {status} {data[:300]!r}")

    def blob_size(self, name):
        """Size of the committed blob, or None when there is none (uncommitted blocks don't count)."""
        status, headers, _ = self._request("HEAD", f"{self.base_path}/{self.container}/{urllib.parse.quote(name)}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"HEAD {name}: {status}")
        return int(headers.get("content-length", "0"))

    def delete_blob(self, name):
        status, _, data = self._request("DELETE", f"{self.base_path}/{self.container}/{urllib.parse.quote(name)}")
        if status not in (202, 404):
            raise RuntimeError(f"DELETE {name}: {status} {data[:300]!r}")


# --- state --------------------------------------------------------------------------------


class Fake:
    def __init__(self, azure, repository, repository_id, default_branch, github_token, base_url):
        self.azure = azure
        self.repository = repository
        self.repository_id = repository_id
        self.default_branch = default_branch
        self.github_token = github_token
        self.base_url = base_url.rstrip("/")
        self.secret = secrets.token_bytes(32)
        self.lock = threading.RLock()
        self.runs = {}  # run backend id -> run
        self.jobs = {}  # job backend id -> job
        self.next_run_id = 1000
        self.reset()

    def reset(self):
        with self.lock:
            self.config = dict(DEFAULT_CONFIG)
            self.azure.azure_style = False
            self.clock_offset = 0.0
            self.caches = []
            self.artifacts = []
            self.faults = []
            self.requests = []
            self.next_cache_id = 1
            self.next_artifact_id = 1
            self.next_fault_id = 1

    def now(self):
        return time.time() + self.clock_offset

    # --- jobs and runtime tokens -----------------------------------------------------------

    def new_job(self, spec):
        """Registers a run (once per run_id) and a job, and mints the job's runtime token."""
        with self.lock:
            mode = spec.get("cache_mode", "write")
            if mode not in CACHE_MODES:
                raise ValueError(f"cache_mode must be one of {sorted(CACHE_MODES)}")
            run_id = int(spec["run_id"]) if spec.get("run_id") is not None else self._next_run_id()
            attempt = int(spec.get("run_attempt", 1))
            ref = spec.get("ref", f"refs/heads/{self.default_branch}")
            base_ref = spec.get("base_ref")
            run = next((r for r in self.runs.values() if r["run_id"] == run_id and r["attempt"] == attempt), None)
            if run is None:
                run = {"backend_id": str(uuid.uuid4()), "run_id": run_id, "attempt": attempt, "ref": ref,
                       "head_sha": spec.get("sha", hashlib.sha1(f"{run_id}".encode()).hexdigest()),
                       "created_at": self.now()}
                self.runs[run["backend_id"]] = run
            job_name = spec.get("job", "build")
            job = {"backend_id": str(uuid.uuid4()), "name": job_name, "run": run["backend_id"]}
            self.jobs[job["backend_id"]] = job
            own, others = CACHE_MODES[mode]
            scopes = [{"Scope": ref, "Permission": own}]
            default_ref = f"refs/heads/{self.default_branch}"
            for other in (base_ref and f"refs/heads/{base_ref}", default_ref):
                if other and all(s["Scope"] != other for s in scopes):
                    scopes.append({"Scope": other, "Permission": others})
            now = self.now()
            ttl = spec.get("expires_in", self.config["runtime_token_ttl_seconds"])
            claims = {
                "iss": "ferry-fake-results",
                "aud": "ferry-fake-results",
                "nbf": int(now) - 60,
                "iat": int(now),
                "exp": int(now + ttl),
                "scp": f"Actions.GenericRead:{uuid.UUID(int=0)} Actions.UploadArtifacts:{run['backend_id']}:"
                       f"{job['backend_id']} Actions.Results:{run['backend_id']}:{job['backend_id']}",
                "ac": json.dumps(scopes, separators=(",", ":")),
                "repository_id": str(self.repository_id),
            }
            token = self.sign(claims)
            owner = self.repository.split("/")[0]
            branch = ref.split("/", 2)[2] if ref.startswith("refs/heads/") else ""
            env = {
                "ACTIONS_RESULTS_URL": self.base_url + "/",
                "ACTIONS_RUNTIME_TOKEN": token,
                "ACTIONS_CACHE_SERVICE_V2": "True",
                "ACTIONS_CACHE_MODE": mode,
                "GITHUB_ACTIONS": "true",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": self.base_url,
                "GITHUB_REPOSITORY": self.repository,
                "GITHUB_REPOSITORY_ID": str(self.repository_id),
                "GITHUB_REPOSITORY_OWNER": owner,
                "GITHUB_TOKEN": self.github_token,
                "GITHUB_RUN_ID": str(run_id),
                "GITHUB_RUN_ATTEMPT": str(attempt),
                "GITHUB_RUN_NUMBER": str(run_id),
                "GITHUB_JOB": job_name,
                "GITHUB_WORKFLOW": "ci",
                "GITHUB_EVENT_NAME": "pull_request" if ref.startswith("refs/pull/") else "push",
                "GITHUB_REF": ref,
                "GITHUB_REF_NAME": branch or ref.split("/", 2)[-1],
                "GITHUB_REF_TYPE": "branch",
                "GITHUB_SHA": run["head_sha"],
                "GITHUB_RETENTION_DAYS": str(self.config["artifact_retention_days"]),
                "FERRY_GHA_FAKE_URL": self.base_url + "/_fake",
                "FERRY_GHA_FAKE_DEFAULT_BRANCH": self.default_branch,
            }
            if base_ref:
                env["GITHUB_BASE_REF"] = base_ref
                env["GITHUB_HEAD_REF"] = spec.get("head_ref", "")
            return {"token": token, "run_id": run_id, "run_backend_id": run["backend_id"],
                    "job_backend_id": job["backend_id"], "cache_scopes": scopes, "env": env}

    def _next_run_id(self):
        self.next_run_id += 1
        while any(r["run_id"] == self.next_run_id for r in self.runs.values()):
            self.next_run_id += 1
        return self.next_run_id

    def sign(self, claims):
        header = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(sig)}"

    def claimed_run_id(self, authorization):
        """The run a token names, unverified: only for the request log, so that a refused
        call still shows under its run."""
        try:
            claims = json.loads(b64url_decode((authorization or "").split(" ")[-1].split(".")[1]))
            run = next(p.split(":")[1] for p in claims["scp"].split(" ") if p.startswith("Actions.Results:"))
            return self.runs[run]["run_id"]
        except (ValueError, IndexError, KeyError, StopIteration, TypeError):
            return None

    def verify(self, authorization):
        """The job a runtime token names; 401 for a missing, forged or expired token."""
        if not authorization or not authorization.startswith("Bearer "):
            raise TwirpError("unauthenticated", "missing bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            header, payload, sig = token.split(".")
            good = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(good, b64url_decode(sig)):
                raise ValueError("bad signature")
            claims = json.loads(b64url_decode(payload))
        except ValueError:
            raise TwirpError("unauthenticated", "invalid runtime token")
        if claims.get("exp", 0) <= self.now():
            raise TwirpError("unauthenticated", "runtime token has expired")
        run_id = job_id = None
        for scope in claims.get("scp", "").split(" "):
            parts = scope.split(":")
            if parts[0] == "Actions.Results" and len(parts) == 3:
                run_id, job_id = parts[1], parts[2]
        if run_id not in self.runs or job_id not in self.jobs:
            raise TwirpError("unauthenticated", "runtime token names no known job")
        scopes = json.loads(claims.get("ac", "[]"))
        return {"run": self.runs[run_id], "job": self.jobs[job_id], "scopes": scopes}

    # --- faults ----------------------------------------------------------------------------

    FAULT_KINDS = {"rate_limited", "token_expired", "read_denied", "write_denied", "internal",
                   "unavailable", "expired_url", "stale_lookup"}

    def add_fault(self, spec):
        kind = spec.get("kind")
        if kind not in self.FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(self.FAULT_KINDS)}")
        with self.lock:
            fault = {"id": self.next_fault_id, "kind": kind, "method": spec.get("method", "*"),
                     "times": int(spec.get("times", 1)), "run_id": spec.get("run_id"),
                     "retry_after": int(spec.get("retry_after", 60)),
                     "window_seconds": float(spec.get("window_seconds", 300))}
            self.next_fault_id += 1
            self.faults.append(fault)
            return fault

    def take_fault(self, method, run_id, kinds):
        """The first armed fault of one of `kinds` matching this call, used up by one."""
        with self.lock:
            for fault in self.faults:
                if fault["kind"] not in kinds:
                    continue
                m = fault["method"]
                is_rest = method.startswith("rest:")
                if not (m == method or (m == "*" and not is_rest) or (m == "rest" and is_rest)):
                    continue
                if fault["run_id"] is not None and (run_id is None or int(fault["run_id"]) != run_id):
                    continue
                if fault["times"] > 0:
                    fault["times"] -= 1
                    if fault["times"] == 0:
                        self.faults.remove(fault)
                return fault
        return None

    # --- housekeeping ----------------------------------------------------------------------

    def sweep(self):
        """What GitHub does in the background: reservations lapse, unused entries and
        expired artifacts go."""
        now = self.now()
        cfg = self.config
        for entry in list(self.caches):
            if not entry["finalized"] and now - entry["created_at"] > cfg["cache_reservation_ttl_seconds"]:
                self._drop_cache(entry)
            elif entry["finalized"] and now - entry["last_accessed_at"] > cfg["cache_unused_ttl_seconds"]:
                self._drop_cache(entry)
        for art in self.artifacts:
            if art["finalized"] and not art["expired"] and art["expires_at"] <= now:
                art["expired"] = True
                self.azure.delete_blob(art["blob"])

    def _drop_cache(self, entry):
        self.caches.remove(entry)
        self.azure.delete_blob(entry["blob"])

    def enforce_cache_limit(self):
        live = sorted((e for e in self.caches if e["finalized"]), key=lambda e: (e["last_accessed_at"], e["id"]))
        total = sum(e["size"] for e in live)
        for entry in live:
            if total <= self.config["cache_limit_bytes"]:
                break
            total -= entry["size"]
            self._drop_cache(entry)

    def url_expiry(self, ttl_name, method, run_id):
        if self.take_fault(method, run_id, {"expired_url"}):
            return time.time() - 60
        return time.time() + self.config[ttl_name]

    # --- CacheService ----------------------------------------------------------------------

    def write_scope(self, auth):
        return next((s["Scope"] for s in auth["scopes"] if s["Permission"] & PERMISSION_WRITE), None)

    def create_cache_entry(self, auth, body):
        key, version = as_str(body, "key"), as_str(body, "version")
        check_key_version(key, version)
        scope = self.write_scope(auth)
        if scope is None:
            return {"ok": False, "signed_upload_url": "", "message": "cache write denied: token has no writable scopes"}
        self.sweep()
        if any(e["key"] == key and e["version"] == version and e["scope"] == scope for e in self.caches):
            raise TwirpError("already_exists", "cache entry with the same key, version, and scope already exists")
        entry = {"id": self.next_cache_id, "key": key, "version": version, "scope": scope,
                 "blob": f"caches/{uuid.uuid4()}", "finalized": False, "size": 0,
                 "created_at": self.now(), "finalized_at": None, "last_accessed_at": self.now(),
                 "run_id": auth["run"]["run_id"]}
        self.next_cache_id += 1
        self.caches.append(entry)
        url = self.azure.sas_url(entry["blob"], "cw", self.url_expiry("upload_url_ttl_seconds", "CreateCacheEntry",
                                                                      auth["run"]["run_id"]))
        return {"ok": True, "signed_upload_url": url, "message": ""}

    def finalize_cache_entry(self, auth, body):
        key, version = as_str(body, "key"), as_str(body, "version")
        size = as_int64(field(body, "size_bytes"), "size_bytes")
        check_key_version(key, version)
        scope = self.write_scope(auth)
        if scope is None:
            return {"ok": False, "entry_id": "0", "message": "cache write denied: token has no writable scopes"}
        self.sweep()
        entry = next((e for e in self.caches if e["key"] == key and e["version"] == version
                      and e["scope"] == scope and not e["finalized"]), None)
        if entry is None:
            raise TwirpError("not_found", "no cache entry with this key and version is being uploaded in this scope")
        actual = self.azure.blob_size(entry["blob"])
        if actual is None:
            return {"ok": False, "entry_id": "0", "message": "the cache entry's blob has not been uploaded"}
        if actual != size:
            return {"ok": False, "entry_id": "0",
                    "message": f"size_bytes {size} does not match the uploaded blob's {actual} bytes"}
        now = self.now()
        entry.update(finalized=True, size=size, finalized_at=now, last_accessed_at=now)
        self.enforce_cache_limit()
        return {"ok": True, "entry_id": str(entry["id"]), "message": ""}

    def get_cache_entry_download_url(self, auth, body):
        key, version = as_str(body, "key"), as_str(body, "version")
        restore_keys = field(body, "restore_keys", []) or []
        if not isinstance(restore_keys, list) or not all(isinstance(k, str) for k in restore_keys):
            raise TwirpError("malformed", "restore_keys must be a list of strings")
        check_key_version(key, version)
        readable = [s["Scope"] for s in auth["scopes"] if s["Permission"] & PERMISSION_READ]
        if not readable:
            raise TwirpError("permission_denied", "cache read denied: token has no readable scopes")
        self.sweep()
        now = self.now()
        run_id = auth["run"]["run_id"]
        stale = self.take_fault("GetCacheEntryDownloadURL", run_id, {"stale_lookup"})
        hidden_after = now - stale["window_seconds"] if stale else None
        delay = self.config["consistency_delay_seconds"]

        def visible(e):
            if not e["finalized"] or e["version"] != version or e["finalized_at"] + delay > now:
                return False
            return hidden_after is None or e["finalized_at"] < hidden_after

        keys = [key] + [k for k in restore_keys]
        hit = None
        for scope in readable:
            candidates = [e for e in self.caches if e["scope"] == scope and visible(e)]
            for k in keys:
                exact = [e for e in candidates if e["key"] == k]
                prefix = [e for e in candidates if e["key"].startswith(k)]
                found = exact or prefix
                if found:
                    hit = max(found, key=lambda e: (e["created_at"], e["id"]))
                    break
            if hit:
                break
        if hit is None:
            return {"ok": False, "signed_download_url": "", "matched_key": ""}
        hit["last_accessed_at"] = now
        url = self.azure.sas_url(hit["blob"], "r", self.url_expiry("download_url_ttl_seconds",
                                                                   "GetCacheEntryDownloadURL", run_id))
        return {"ok": True, "signed_download_url": url, "matched_key": hit["key"]}

    # --- ArtifactService -------------------------------------------------------------------

    def _own_run(self, auth, body, job_too):
        run_id = as_str(body, "workflow_run_backend_id")
        job_id = as_str(body, "workflow_job_run_backend_id")
        if run_id != auth["run"]["backend_id"] or (job_too and job_id != auth["job"]["backend_id"]):
            raise TwirpError("permission_denied", "the runtime token does not grant access to this workflow run or job")
        return run_id, job_id

    def artifact_json(self, art):
        return {"workflow_run_backend_id": art["run"], "workflow_job_run_backend_id": art["job"],
                "database_id": str(art["id"]), "name": art["name"], "size": str(art["size"]),
                "created_at": rfc3339(art["created_at"]), "digest": art["digest"]}

    def create_artifact(self, auth, body):
        run, job = self._own_run(auth, body, job_too=True)
        name = as_str(body, "name")
        version = as_int64(field(body, "version"), "version")
        if not 1 <= len(name) <= 256:
            raise TwirpError("invalid_argument", "name invalid length for artifact name: must be between 1 and 256 characters")
        if version <= 0:
            raise TwirpError("invalid_argument", "version must be set")
        self.sweep()
        now = self.now()
        max_expiry = now + self.config["artifact_retention_days"] * 86400
        expires_raw = field(body, "expires_at")
        expires_at = parse_rfc3339(expires_raw) if expires_raw else max_expiry
        if expires_at <= now:
            raise TwirpError("invalid_argument", "expires_at must be in the future")
        expires_at = min(expires_at, max_expiry)
        if any(a["run"] == run and a["name"] == name and not a["expired"] for a in self.artifacts):
            raise TwirpError("already_exists", "an artifact with this name already exists on the workflow run")
        if sum(1 for a in self.artifacts if a["job"] == job) >= self.config["artifacts_per_job"]:
            raise TwirpError("invalid_argument",
                             f"artifact limit reached: a job may upload at most {self.config['artifacts_per_job']} artifacts")
        art = {"id": self.next_artifact_id, "run": run, "job": job, "name": name, "version": version,
               "mime_type": wrapped(field(body, "mime_type")) or "", "blob": f"artifacts/{run}/{uuid.uuid4()}",
               "finalized": False, "expired": False, "size": 0, "digest": None,
               "created_at": now, "updated_at": now, "expires_at": expires_at}
        self.next_artifact_id += 1
        self.artifacts.append(art)
        url = self.azure.sas_url(art["blob"], "cw", self.url_expiry("upload_url_ttl_seconds", "CreateArtifact",
                                                                    auth["run"]["run_id"]))
        return {"ok": True, "signed_upload_url": url}

    def finalize_artifact(self, auth, body):
        run, job = self._own_run(auth, body, job_too=True)
        name = as_str(body, "name")
        size = as_int64(field(body, "size"), "size")
        digest = wrapped(field(body, "hash"))
        art = next((a for a in self.artifacts if a["run"] == run and a["job"] == job and a["name"] == name
                    and not a["finalized"] and not a["expired"]), None)
        if art is None:
            raise TwirpError("not_found", "no artifact with this name is being uploaded by this job")
        actual = self.azure.blob_size(art["blob"])
        if actual is None:
            raise TwirpError("failed_precondition", "the artifact's blob has not been uploaded")
        if actual != size:
            raise TwirpError("invalid_argument", f"size {size} does not match the uploaded blob's {actual} bytes")
        art.update(finalized=True, size=size, digest=digest or None, updated_at=self.now())
        return {"ok": True, "artifact_id": str(art["id"])}

    def list_artifacts(self, auth, body):
        run, _ = self._own_run(auth, body, job_too=False)
        name = wrapped(field(body, "name_filter"))
        ident = wrapped(field(body, "id_filter"))
        ident = as_int64(ident, "id_filter") if ident not in (None, "") else None
        self.sweep()
        arts = [a for a in self.artifacts if a["run"] == run and a["finalized"] and not a["expired"]
                and (name is None or a["name"] == name) and (ident is None or a["id"] == ident)]
        return {"artifacts": [self.artifact_json(a) for a in sorted(arts, key=lambda a: a["id"])]}

    def _find_artifact(self, auth, body):
        run, job = self._own_run(auth, body, job_too=False)
        name = as_str(body, "name")
        self.sweep()
        art = next((a for a in self.artifacts if a["run"] == run and a["name"] == name and a["finalized"]
                    and not a["expired"] and (not job or a["job"] == job)), None)
        if art is None:
            raise TwirpError("not_found", "artifact not found")
        return art

    def get_signed_artifact_url(self, auth, body):
        art = self._find_artifact(auth, body)
        url = self.artifact_download_url(art, "download_url_ttl_seconds", "GetSignedArtifactURL", auth["run"]["run_id"])
        return {"signed_url": url}

    def artifact_download_url(self, art, ttl_name, method, run_id):
        filename = art["name"] if art["mime_type"] not in ("", "application/zip") else f"{art['name']}.zip"
        disposition = (f"attachment; filename=\"{filename.encode('ascii', 'replace').decode()}\"; "
                       f"filename*=UTF-8''{urllib.parse.quote(filename)}")
        return self.azure.sas_url(art["blob"], "r", self.url_expiry(ttl_name, method, run_id),
                                  content_disposition=disposition)

    def delete_artifact(self, auth, body):
        art = self._find_artifact(auth, body)
        self.artifacts.remove(art)
        self.azure.delete_blob(art["blob"])
        return {"ok": True, "artifact_id": str(art["id"])}

    # --- REST ------------------------------------------------------------------------------

    def rest_cache_json(self, e):
        return {"id": e["id"], "ref": e["scope"], "key": e["key"], "version": e["version"],
                "last_accessed_at": rfc3339(e["last_accessed_at"]), "created_at": rfc3339(e["created_at"]),
                "size_in_bytes": e["size"]}

    def rest_artifact_json(self, a):
        run = self.runs[a["run"]]
        api = f"{self.base_url}/repos/{self.repository}/actions/artifacts/{a['id']}"
        return {
            "id": a["id"], "node_id": b64url(f"Artifact{a['id']}".encode()), "name": a["name"],
            "size_in_bytes": a["size"], "url": api, "archive_download_url": f"{api}/zip",
            "expired": a["expired"], "created_at": rfc3339(a["created_at"]),
            "updated_at": rfc3339(a["updated_at"]), "expires_at": rfc3339(a["expires_at"]),
            "digest": a["digest"],
            "workflow_run": {"id": run["run_id"], "repository_id": self.repository_id,
                             "head_repository_id": self.repository_id,
                             "head_branch": run["ref"].split("/", 2)[-1], "head_sha": run["head_sha"]},
        }

    def snapshot(self):
        return {
            "now": rfc3339(self.now()),
            "config": self.config,
            "caches": [dict(self.rest_cache_json(e), finalized=e["finalized"], blob=e["blob"],
                            finalized_at=e["finalized_at"] and rfc3339(e["finalized_at"])) for e in self.caches],
            "artifacts": [dict(self.rest_artifact_json(a), finalized=a["finalized"], blob=a["blob"],
                               job=self.jobs[a["job"]]["name"], mime_type=a["mime_type"], version=a["version"])
                          for a in self.artifacts],
            "faults": self.faults,
            "runs": list(self.runs.values()),
        }


def check_key_version(key, version):
    if not key:
        raise TwirpError("invalid_argument", "key is required")
    if len(key) > 512:
        raise TwirpError("invalid_argument", "key must be at most 512 characters")
    if not version:
        raise TwirpError("invalid_argument", "version is required")


# --- HTTP ---------------------------------------------------------------------------------


TWIRP_METHODS = {
    (CACHE_SERVICE, "CreateCacheEntry"): Fake.create_cache_entry,
    (CACHE_SERVICE, "FinalizeCacheEntryUpload"): Fake.finalize_cache_entry,
    (CACHE_SERVICE, "GetCacheEntryDownloadURL"): Fake.get_cache_entry_download_url,
    (ARTIFACT_SERVICE, "CreateArtifact"): Fake.create_artifact,
    (ARTIFACT_SERVICE, "FinalizeArtifact"): Fake.finalize_artifact,
    (ARTIFACT_SERVICE, "ListArtifacts"): Fake.list_artifacts,
    (ARTIFACT_SERVICE, "GetSignedArtifactURL"): Fake.get_signed_artifact_url,
    (ARTIFACT_SERVICE, "DeleteArtifact"): Fake.delete_artifact,
}
WRITE_METHODS = {"CreateCacheEntry", "FinalizeCacheEntryUpload"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-gha-fake/1"
    fake: Fake = None

    def log_message(self, fmt, *args):
        if os.environ.get("FERRY_GHA_FAKE_VERBOSE"):
            sys.stderr.write("fake-results: " + (fmt % args) + "\n")

    # --- plumbing ---

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if body or status not in (204, 302, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _record(self, kind, name, status, run_id=None, detail=None):
        with self.fake.lock:
            self.fake.requests.append({"at": rfc3339(time.time()), "kind": kind, "method": name,
                                       "status": status, "run_id": run_id, "detail": detail})
            del self.fake.requests[:-2000]

    def do_GET(self):
        self._route()

    def do_POST(self):
        self._route()

    def do_DELETE(self):
        self._route()

    def do_PUT(self):
        self._route()

    def do_HEAD(self):
        self._route()

    def _route(self):
        target = urllib.parse.urlsplit(self.path)
        if target.scheme == "http":
            # Asked as an HTTP proxy (absolute-form request line).
            if target.hostname == self.fake.azure.azure_host:
                return self._proxy_blob(target)
            own = urllib.parse.urlsplit(self.fake.base_url)
            if (target.hostname, target.port) != (own.hostname, own.port):
                self._body()
                return self._json(502, {"message": f"this fake proxies only {self.fake.azure.azure_host}"})
            self.path = target.path + (f"?{target.query}" if target.query else "")
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path.startswith("/twirp/"):
                self._twirp(path)
            elif path.startswith("/_fake/"):
                self._admin(path)
            elif path.startswith("/repos/"):
                self._rest(path)
            else:
                self._json(404, {"message": "Not Found", "documentation_url": DOCS})
        except BrokenPipeError:
            pass

    # --- blob proxy ---

    def _proxy_blob(self, target):
        body = self._body()
        hop = {"host", "connection", "proxy-connection", "keep-alive", "proxy-authorization",
               "transfer-encoding", "te", "trailer", "upgrade"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        headers["Content-Length"] = str(len(body))
        status, resp_headers, data = self.fake.azure.forward(
            self.command, target.path + (f"?{target.query}" if target.query else ""), headers, body)
        self._record("blob", self.command, status, detail=self.headers.get("x-ms-range") or self.headers.get("Range"))
        self.send_response(status)
        for k, v in resp_headers:
            # A HEAD's Content-Length is the blob's size: pass it on as it is.
            if k.lower() not in hop and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # --- Twirp ---

    def _twirp(self, path):
        body = self._body()
        parts = path.split("/")
        method = parts[3] if len(parts) == 4 else ""
        run_id = None
        try:
            target = TWIRP_METHODS.get((parts[2], method)) if len(parts) == 4 else None
            if self.command != "POST" or target is None:
                raise TwirpError("bad_route", f"no handler for {self.command} {path}")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise TwirpError("bad_route", f"unexpected Content-Type {ctype!r}: this fake speaks Twirp JSON only")
            with self.fake.lock:
                run_id = self.fake.claimed_run_id(self.headers.get("Authorization"))
                auth = self.fake.verify(self.headers.get("Authorization"))
                run_id = auth["run"]["run_id"]
                self._inject(method, run_id)
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    raise TwirpError("malformed", "the request body is not valid JSON")
                if not isinstance(request, dict):
                    raise TwirpError("malformed", "the request body must be a JSON object")
                response = target(self.fake, auth, request)
            self._record("twirp", method, 200, run_id)
            self._json(200, response)
        except TwirpError as e:
            self._record("twirp", method, e.status, run_id)
            self._json(e.status, {"code": e.code, "msg": e.msg}, e.headers)
        except _WriteDenied as e:
            self._record("twirp", method, 200, run_id)
            self._json(200, e.response)

    def _inject(self, method, run_id):
        fake = self.fake
        fault = fake.take_fault(method, run_id, {"rate_limited", "token_expired", "read_denied",
                                                 "write_denied", "internal", "unavailable"})
        if fault is None:
            return
        kind = fault["kind"]
        if kind == "rate_limited":
            raise TwirpError("resource_exhausted", "rate limit exceeded", {"Retry-After": fault["retry_after"]})
        if kind == "token_expired":
            raise TwirpError("unauthenticated", "runtime token has expired")
        if kind == "read_denied":
            raise TwirpError("permission_denied", "cache read denied: token has no readable scopes")
        if kind == "write_denied":
            if method == "CreateCacheEntry":
                raise _WriteDenied({"ok": False, "signed_upload_url": "",
                                    "message": "cache write denied: token has no writable scopes"})
            if method == "FinalizeCacheEntryUpload":
                raise _WriteDenied({"ok": False, "entry_id": "0",
                                    "message": "cache write denied: token has no writable scopes"})
            raise TwirpError("permission_denied", "write denied: token has no writable scopes")
        if kind == "internal":
            raise TwirpError("internal", "injected internal error")
        raise TwirpError("unavailable", "injected unavailability")

    # --- REST ---

    def _rest(self, path):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
        self._body()
        op = "rest"
        try:
            op, args = self._rest_route(path)
            self._rest_auth()
            fault = self.fake.take_fault("rest:" + op, None, {"rate_limited", "token_expired", "read_denied",
                                                             "internal", "unavailable"})
            if fault:
                raise {"rate_limited": RestError(429, "API rate limit exceeded for installation.",
                                                 {"Retry-After": fault["retry_after"],
                                                  "X-RateLimit-Remaining": 0}),
                       "token_expired": RestError(401, "Bad credentials"),
                       "read_denied": RestError(403, "Resource not accessible by integration"),
                       "internal": RestError(500, "Server Error"),
                       "unavailable": RestError(503, "Service Unavailable")}[fault["kind"]]
            with self.fake.lock:
                self.fake.sweep()
                status, obj, headers = getattr(self, "_rest_" + op)(query, *args)
            self._record("rest", op, status)
            if obj is None:
                self._send(status, b"", headers)
            else:
                self._json(status, obj, headers)
        except RestError as e:
            self._record("rest", op, e.status)
            self._json(e.status, {"message": e.message, "documentation_url": DOCS, "status": str(e.status)},
                       e.headers)

    def _rest_route(self, path):
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/actions/(.+)", path)
        if not m or f"{m.group(1)}/{m.group(2)}".lower() != self.fake.repository.lower():
            raise RestError(404, "Not Found")
        rest, verb = m.group(3), self.command
        routes = [
            ("GET", r"caches", "list_caches"),
            ("DELETE", r"caches", "delete_caches_by_key"),
            ("DELETE", r"caches/(\d+)", "delete_cache_by_id"),
            ("GET", r"runs/(\d+)/artifacts", "list_run_artifacts"),
            ("GET", r"artifacts", "list_artifacts"),
            ("GET", r"artifacts/(\d+)", "get_artifact"),
            ("DELETE", r"artifacts/(\d+)", "delete_artifact"),
            ("GET", r"artifacts/(\d+)/([^/]+)", "download_artifact"),
        ]
        for v, pattern, op in routes:
            mm = re.fullmatch(pattern, rest)
            if mm and v == verb:
                return op, mm.groups()
        raise RestError(404, "Not Found")

    def _rest_auth(self):
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if not auth:
            raise RestError(401, "Requires authentication")
        if scheme.lower() not in ("bearer", "token") or token.strip() != self.fake.github_token:
            raise RestError(401, "Bad credentials")

    def _page(self, items, query):
        try:
            per_page = min(max(int(query.get("per_page", 30)), 1), 100)
            page = max(int(query.get("page", 1)), 1)
        except ValueError:
            raise RestError(422, "Invalid request: per_page and page must be integers.")
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        base = f"{self.fake.base_url}{urllib.parse.urlsplit(self.path).path}"
        links = []

        def link(p, rel):
            q = dict(query, per_page=str(per_page), page=str(p))
            links.append(f'<{base}?{urllib.parse.urlencode(q)}>; rel="{rel}"')
        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
            link(page - 1, "prev")
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _rest_list_caches(self, query):
        caches = [e for e in self.fake.caches if e["finalized"]]
        if query.get("key"):
            caches = [e for e in caches if e["key"].startswith(query["key"])]
        if query.get("ref"):
            caches = [e for e in caches if e["scope"] == query["ref"]]
        sort = query.get("sort", "last_accessed_at")
        if sort not in ("created_at", "last_accessed_at", "size_in_bytes"):
            raise RestError(422, "Invalid request: sort must be created_at, last_accessed_at or size_in_bytes.")
        direction = query.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise RestError(422, "Invalid request: direction must be asc or desc.")
        field_name = {"created_at": "created_at", "last_accessed_at": "last_accessed_at", "size_in_bytes": "size"}[sort]
        caches.sort(key=lambda e: (e[field_name], e["id"]), reverse=direction == "desc")
        chunk, headers = self._page(caches, query)
        return 200, {"total_count": len(caches), "actions_caches": [self.fake.rest_cache_json(e) for e in chunk]}, headers

    def _rest_delete_caches_by_key(self, query):
        if not query.get("key"):
            raise RestError(422, "Invalid request: key is required.")
        doomed = [e for e in self.fake.caches if e["finalized"] and e["key"] == query["key"]
                  and (not query.get("ref") or e["scope"] == query["ref"])]
        if not doomed:
            raise RestError(404, "Not Found")
        for e in doomed:
            self.fake._drop_cache(e)
        return 200, {"total_count": len(doomed), "actions_caches": [self.fake.rest_cache_json(e) for e in doomed]}, {}

    def _rest_delete_cache_by_id(self, query, cache_id):
        entry = next((e for e in self.fake.caches if e["id"] == int(cache_id) and e["finalized"]), None)
        if entry is None:
            raise RestError(404, "Not Found")
        self.fake._drop_cache(entry)
        return 204, None, {}

    def _artifacts(self, query, run=None):
        arts = [a for a in self.fake.artifacts if a["finalized"] and (run is None or a["run"] in run)]
        if "name" in query:
            arts = [a for a in arts if a["name"] == query["name"]]
        arts.sort(key=lambda a: a["id"], reverse=query.get("direction", "desc") == "desc")
        chunk, headers = self._page(arts, query)
        return 200, {"total_count": len(arts), "artifacts": [self.fake.rest_artifact_json(a) for a in chunk]}, headers

    def _rest_list_artifacts(self, query):
        return self._artifacts(query)

    def _rest_list_run_artifacts(self, query, run_id):
        runs = {b for b, r in self.fake.runs.items() if r["run_id"] == int(run_id)}
        if not runs:
            raise RestError(404, "Not Found")
        return self._artifacts(query, runs)

    def _artifact(self, artifact_id):
        art = next((a for a in self.fake.artifacts if a["id"] == int(artifact_id) and a["finalized"]), None)
        if art is None:
            raise RestError(404, "Not Found")
        return art

    def _rest_get_artifact(self, query, artifact_id):
        return 200, self.fake.rest_artifact_json(self._artifact(artifact_id)), {}

    def _rest_delete_artifact(self, query, artifact_id):
        art = self._artifact(artifact_id)
        self.fake.artifacts.remove(art)
        if not art["expired"]:
            self.fake.azure.delete_blob(art["blob"])
        return 204, None, {}

    def _rest_download_artifact(self, query, artifact_id, archive_format):
        art = self._artifact(artifact_id)
        if archive_format != "zip":
            raise RestError(404, "Not Found")
        if art["expired"]:
            raise RestError(410, "Artifact has expired")
        url = self.fake.artifact_download_url(art, "redirect_url_ttl_seconds", "rest:download_artifact",
                                              self.fake.runs[art["run"]]["run_id"])
        return 302, None, {"Location": url}

    # --- admin ---

    def _admin(self, path):
        fake = self.fake
        raw = self._body()
        try:
            spec = json.loads(raw) if raw else {}
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        verb = self.command
        try:
            with fake.lock:
                if path == "/_fake/health":
                    return self._json(200, {"ok": True})
                if path == "/_fake/reset" and verb == "POST":
                    for e in list(fake.caches):
                        fake._drop_cache(e)
                    for a in fake.artifacts:
                        if not a["expired"]:
                            fake.azure.delete_blob(a["blob"])
                    fake.reset()
                    return self._json(200, {"ok": True})
                if path == "/_fake/jobs" and verb == "POST":
                    return self._json(200, fake.new_job(spec))
                if path == "/_fake/faults":
                    if verb == "POST":
                        return self._json(200, fake.add_fault(spec))
                    if verb == "DELETE":
                        fake.faults.clear()
                        return self._json(200, {"ok": True})
                    return self._json(200, fake.faults)
                if path == "/_fake/clock" and verb == "POST":
                    fake.clock_offset += float(spec.get("advance_seconds", 0))
                    fake.sweep()
                    return self._json(200, {"now": rfc3339(fake.now())})
                if path == "/_fake/config":
                    if verb == "POST":
                        unknown = set(spec) - set(DEFAULT_CONFIG)
                        if unknown:
                            return self._json(400, {"error": f"unknown settings {sorted(unknown)}"})
                        for k, v in spec.items():
                            if isinstance(DEFAULT_CONFIG[k], bool) and not isinstance(v, bool):
                                return self._json(400, {"error": f"{k} must be true or false"})
                            fake.config[k] = type(DEFAULT_CONFIG[k])(v)
                        fake.azure.azure_style = fake.config["azure_blob_host"]
                        fake.enforce_cache_limit()
                    return self._json(200, fake.config)
                if path == "/_fake/state" and verb == "GET":
                    return self._json(200, fake.snapshot())
                if path == "/_fake/requests":
                    if verb == "DELETE":
                        fake.requests.clear()
                    return self._json(200, fake.requests)
                if path == "/_fake/caches/evict" and verb == "POST":
                    doomed = [e for e in fake.caches if e["finalized"] and e["key"] == spec.get("key")
                              and spec.get("version") in (None, e["version"])]
                    for e in doomed:
                        if spec.get("blob_only"):
                            fake.azure.delete_blob(e["blob"])
                        else:
                            fake._drop_cache(e)
                    return self._json(200, {"evicted": [e["id"] for e in doomed]})
                return self._json(404, {"error": f"no admin route {verb} {path}"})
        except (ValueError, KeyError, TypeError) as e:
            return self._json(400, {"error": str(e)})


class _WriteDenied(Exception):
    def __init__(self, response):
        super().__init__("write denied")
        self.response = response


def write_env_file(path, env):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for k, v in env.items():
            if "'" in v:
                raise ValueError(f"{k} holds a single quote")
            f.write(f"export {k}='{v}'\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--blob-endpoint", required=True, help="e.g. http://127.0.0.1:10000/devstoreaccount1")
    p.add_argument("--account", default="devstoreaccount1")
    p.add_argument("--account-key", required=True)
    p.add_argument("--container", default="actions-results")
    p.add_argument("--repository", default="ferry-ci/ferry-test")
    p.add_argument("--repository-id", type=int, default=424242)
    p.add_argument("--default-branch", default="main")
    p.add_argument("--env-file", help="write the default job's environment here once serving")
    args = p.parse_args()

    azure = Azure(args.blob_endpoint, args.account, args.account_key, args.container)
    azure.create_container()
    base_url = f"http://{args.host}:{args.port}"
    fake = Fake(azure, args.repository, args.repository_id, args.default_branch,
                "ghs_" + secrets.token_hex(18), base_url)
    Handler.fake = fake
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.env_file:
        job = fake.new_job({"run_id": 1000, "job": "build"})
        write_env_file(args.env_file, dict(job["env"], FERRY_STORE="gha://"))
    print(f"fake-results: serving {base_url}, blobs in {azure.blob_url('')}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
