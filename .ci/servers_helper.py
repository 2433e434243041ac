#!/usr/bin/env python3
"""Small helpers for .ci/servers.sh, standard library only.

  free-ports N [OFFSET]              print N free loopback TCP ports; with OFFSET, each
                                     port P is one where P+OFFSET is free too
  wait-http URL SECONDS              wait until URL answers any HTTP status
  wait-ok URL SECONDS                wait until URL answers 2xx
  s3-ready ENDPOINT KEY SECRET BUCKET SECONDS
                                     wait until a SigV4-signed ListObjectsV2 of BUCKET
                                     answers 200 (the server is up, knows the key and
                                     has the bucket)
  http METHOD URL [BODY]             one request; 2xx and 409 (already there) succeed
  azure-container ENDPOINT ACCOUNT KEY CONTAINER
                                     create a blob container with Shared Key auth
  gcs-xml-proxy PORT UPSTREAM        serve the GCS XML write calls fake-gcs-server lacks

Why the proxy: the object-store crate's GCS client speaks the XML API. fake-gcs-server 1.54 serves
the XML API's reads (GET/HEAD object, list-type=2 listing, DELETE) but answers
`400 invalid uploadType` to every XML write: a plain `PUT /bucket/object`, the same PUT
with `x-goog-if-generation-match: 0`, and `POST /bucket/object?uploads` (see
docs/stores.md). The proxy turns exactly those writes into JSON-API calls the emulator
does implement, so ferry's real GCS client is exercised against a real server:

  PUT /b/o [x-goog-if-generation-match: G]
      -> POST /upload/storage/v1/b/b/o?uploadType=multipart&ifGenerationMatch=G
         (the one upload path where the emulator checks the precondition; 412 passes back)
  POST /b/o?uploads                -> an upload id kept here
  PUT /b/o?partNumber=N&uploadId=U -> the part stored as object .gcs-xml-proxy/U/N
  POST /b/o?uploadId=U             -> JSON compose of the parts into b/o, parts deleted
  DELETE /b/o?uploadId=U           -> the parts deleted
  anything else                    -> passed through unchanged, streamed
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import socket
import socketserver
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from email.utils import formatdate

PART_PREFIX = ".gcs-xml-proxy"


def _bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


def free_ports(n, offset=0):
    """N free ports, all held until all are found so none is given twice.

    With an offset, P+OFFSET must be free as well: SeaweedFS serves gRPC on each HTTP port
    plus 10000, and its admin worker dials admin port + 10000 whatever -admin.port.grpc says.
    """
    socks, ports = [], []
    try:
        for _ in range(1000):
            if len(ports) == n:
                break
            s = _bind(0)
            if s is None:
                continue
            socks.append(s)
            port = s.getsockname()[1]
            if offset:
                if port + offset > 65535:
                    continue
                pair = _bind(port + offset)
                if pair is None:
                    continue
                socks.append(pair)
            ports.append(port)
        if len(ports) < n:
            print(f"servers: found only {len(ports)} of {n} free ports", file=sys.stderr)
            return 1
        print(" ".join(str(p) for p in ports))
        return 0
    finally:
        for s in socks:
            s.close()


def wait_http(url, seconds):
    deadline = time.monotonic() + float(seconds)
    last = None
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return 0
        except urllib.error.HTTPError:
            return 0  # any status means the server answers
        except Exception as e:  # connection refused while it starts
            last = e
            time.sleep(0.2)
    print(f"servers: {url} did not answer within {seconds}s: {last}", file=sys.stderr)
    return 1


def wait_ok(url, seconds):
    deadline = time.monotonic() + float(seconds)
    last = None
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return 0
        except Exception as e:  # refused while it starts, or not ready yet (4xx/5xx)
            last = e
            time.sleep(0.2)
    print(f"servers: {url} did not answer 2xx within {seconds}s: {last}", file=sys.stderr)
    return 1


def _sigv4_get(endpoint, key, secret, path, query, region="us-east-1"):
    """A GET signed with AWS Signature Version 4 (path-style, empty body)."""
    _sigv4(endpoint, key, secret, "GET", path, query, b"", region)


def _sigv4(endpoint, key, secret, method, path, query, body, region="us-east-1"):
    """A request signed with AWS Signature Version 4 (path-style)."""
    parsed = urllib.parse.urlsplit(endpoint)
    host = parsed.netloc
    now = time.gmtime()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
    day = amz_date[:8]
    empty = hashlib.sha256(body).hexdigest()
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, empty,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"{endpoint.rstrip('/')}{path}?{canonical_query}", data=body or None, method=method
    )
    for name, value in headers.items():
        if name != "host":
            req.add_header(name, value)
    req.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}",
    )
    urllib.request.urlopen(req, timeout=5).close()


def s3_ready(endpoint, key, secret, bucket, seconds):
    """Ready once the bucket lists and takes a write: a store can answer listings before it
    can store anything (SeaweedFS's volume server registers with its master after the S3
    gateway is up, and writes fail until it has)."""
    deadline = time.monotonic() + float(seconds)
    last = None
    probe = f"/{bucket}/.ferry-ready-probe"
    while time.monotonic() < deadline:
        try:
            _sigv4_get(endpoint, key, secret, f"/{bucket}", {"list-type": "2", "max-keys": "1"})
            _sigv4(endpoint, key, secret, "PUT", probe, {}, b"ready")
            _sigv4(endpoint, key, secret, "DELETE", probe, {}, b"")
            return 0
        except Exception as e:  # refused while it starts; 403/404 until keys and bucket load
            last = e
            time.sleep(0.2)
    print(f"servers: {endpoint}/{bucket} did not list within {seconds}s: {last}", file=sys.stderr)
    return 1


def http_call(method, url, body=None):
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        urllib.request.urlopen(req, timeout=10).close()
        return 0
    except urllib.error.HTTPError as e:
        if e.code == 409:
            return 0
        print(f"servers: {method} {url} -> {e.code} {e.read()[:300]!r}", file=sys.stderr)
        return 1


def azure_container(endpoint, account, key, container):
    """Creates a container; Azurite checks Shared Key signatures, so the request is signed."""
    url = f"{endpoint.rstrip('/')}/{container}?restype=container"
    parsed = urllib.parse.urlsplit(url)
    date = formatdate(usegmt=True)
    version = "2021-08-06"
    canonical_headers = f"x-ms-date:{date}\nx-ms-version:{version}\n"
    canonical_resource = f"/{account}{parsed.path}\nrestype:container"
    # VERB, then Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
    # If-Match, If-None-Match, If-Unmodified-Since, Range (a zero length is signed as empty).
    content_type = "application/octet-stream"
    string_to_sign = "PUT\n\n\n\n\n" + content_type + "\n" + "\n" * 6 + canonical_headers + canonical_resource
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    req = urllib.request.Request(url, data=b"", method="PUT")
    req.add_header("Content-Type", content_type)
    req.add_header("x-ms-date", date)
    req.add_header("x-ms-version", version)
    req.add_header("Authorization", f"SharedKey {account}:{sig}")
    try:
        urllib.request.urlopen(req, timeout=10).close()
        return 0
    except urllib.error.HTTPError as e:
        if e.code == 409:
            return 0
        print(f"servers: creating container {container} -> {e.code} {e.read()[:300]!r}", file=sys.stderr)
        return 1


class GcsXmlProxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = ("127.0.0.1", 0)
    uploads = {}

    def log_message(self, fmt, *args):
        sys.stderr.write("gcs-xml-proxy: " + (fmt % args) + "\n")

    # --- plumbing ---------------------------------------------------------
    def _conn(self):
        return http.client.HTTPConnection(*self.upstream, timeout=120)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reply(self, status, body=b"", headers=None, content_type="application/xml"):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _xml_error(self, status, code, message):
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        self._reply(status, body.encode())

    def _split(self):
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        parts = parsed.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        obj = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return bucket, obj, query

    def _json_upload(self, bucket, name, data, content_type, generation_match=None):
        boundary = "ferry-" + uuid.uuid4().hex
        meta = json.dumps({"name": name, "contentType": content_type}).encode()
        payload = (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode() + meta
            + f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        q = {"uploadType": "multipart", "name": name}
        if generation_match is not None:
            q["ifGenerationMatch"] = generation_match
        path = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?" + urllib.parse.urlencode(q)
        return self._json("POST", path, payload, f"multipart/related; boundary={boundary}")

    def _json(self, method, path, body=None, content_type="application/json"):
        conn = self._conn()
        headers = {"Content-Type": content_type} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"raw": data.decode(errors="replace")}
        return resp.status, doc

    def _object_headers(self, doc):
        etag = doc.get("etag") or doc.get("md5Hash") or str(doc.get("generation", ""))
        return {"ETag": f'"{etag.strip(chr(34))}"', "x-goog-generation": str(doc.get("generation", "1"))}

    def _delete_parts(self, bucket, upload_id):
        prefix = f"{PART_PREFIX}/{upload_id}/"
        b = urllib.parse.quote(bucket, safe="")
        status, doc = self._json("GET", f"/storage/v1/b/{b}/o?" + urllib.parse.urlencode({"prefix": prefix}))
        for item in doc.get("items", []) if status == 200 else []:
            self._json("DELETE", f"/storage/v1/b/{b}/o/{urllib.parse.quote(item['name'], safe='')}")

    # --- the writes the emulator lacks ------------------------------------
    def do_PUT(self):
        bucket, obj, query = self._split()
        if not obj or "X-Goog-Algorithm" in query:
            return self._passthrough()
        data = self._body()
        ctype = self.headers.get("Content-Type") or "application/octet-stream"
        if "uploadId" in query:
            upload_id = query["uploadId"]
            if upload_id not in self.uploads:
                return self._xml_error(404, "NoSuchUpload", "unknown upload id")
            name = f"{PART_PREFIX}/{upload_id}/{int(query.get('partNumber', '0')):05d}"
            status, doc = self._json_upload(bucket, name, data, "application/octet-stream")
        else:
            status, doc = self._json_upload(
                bucket, obj, data, ctype, self.headers.get("x-goog-if-generation-match")
            )
        if status == 412:
            return self._xml_error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
        if status >= 300:
            return self._xml_error(status, "UpstreamError", json.dumps(doc)[:500])
        self._reply(200, b"", self._object_headers(doc))

    def do_POST(self):
        bucket, obj, query = self._split()
        if not obj:
            return self._passthrough()
        if "uploads" in query:
            self._body()
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = (bucket, obj)
            body = (
                "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult>"
                f"<Bucket>{bucket}</Bucket><Key>{obj}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>"
            )
            return self._reply(200, body.encode())
        if "uploadId" in query:
            upload_id = query["uploadId"]
            root = ET.fromstring(self._body() or b"<CompleteMultipartUpload/>")
            numbers = [int(p.findtext("PartNumber")) for p in root.iter("Part")]
            if self.uploads.pop(upload_id, None) is None:
                return self._xml_error(404, "NoSuchUpload", "unknown upload id")
            sources = [{"name": f"{PART_PREFIX}/{upload_id}/{n:05d}"} for n in numbers]
            b = urllib.parse.quote(bucket, safe="")
            o = urllib.parse.quote(obj, safe="")
            status, doc = self._json(
                "POST",
                f"/storage/v1/b/{b}/o/{o}/compose",
                json.dumps({"sourceObjects": sources, "destination": {"contentType": "application/octet-stream"}}).encode(),
            )
            self._delete_parts(bucket, upload_id)
            if status >= 300:
                return self._xml_error(status, "UpstreamError", json.dumps(doc)[:500])
            headers = self._object_headers(doc)
            body = (
                "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult>"
                f"<Bucket>{bucket}</Bucket><Key>{obj}</Key><ETag>{headers['ETag']}</ETag>"
                "</CompleteMultipartUploadResult>"
            )
            return self._reply(200, body.encode(), {"x-goog-generation": headers["x-goog-generation"]})
        return self._passthrough()

    def do_DELETE(self):
        bucket, obj, query = self._split()
        if obj and "uploadId" in query:
            self.uploads.pop(query["uploadId"], None)
            self._delete_parts(bucket, query["uploadId"])
            return self._reply(204)
        return self._passthrough()

    def do_GET(self):
        self._passthrough()

    def do_HEAD(self):
        self._passthrough()

    def _passthrough(self):
        body = self._body() if self.command in ("PUT", "POST", "PATCH", "DELETE") else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = self._conn()
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        length = None
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "transfer-encoding"):
                continue
            if k.lower() == "content-length":
                length = v
            self.send_header(k, v)
        chunked = length is None and self.command != "HEAD" and resp.status not in (204, 304)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command != "HEAD":
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        conn.close()


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def gcs_xml_proxy(port, upstream):
    u = urllib.parse.urlsplit(upstream)
    GcsXmlProxy.upstream = (u.hostname, u.port)
    server = ThreadingServer(("127.0.0.1", int(port)), GcsXmlProxy)
    server.serve_forever()


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "free-ports":
        return free_ports(int(args[0]), int(args[1]) if len(args) > 1 else 0)
    if cmd == "wait-http":
        return wait_http(args[0], args[1])
    if cmd == "wait-ok":
        return wait_ok(args[0], args[1])
    if cmd == "s3-ready":
        return s3_ready(*args)
    if cmd == "http":
        return http_call(args[0], args[1], args[2] if len(args) > 2 else None)
    if cmd == "azure-container":
        return azure_container(*args)
    if cmd == "gcs-xml-proxy":
        gcs_xml_proxy(args[0], args[1])
        return 0
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
