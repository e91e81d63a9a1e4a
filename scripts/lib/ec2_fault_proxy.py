#!/usr/bin/env python3
"""EC2 fault and idempotency layer in front of moto server (which has neither).

Only EC2 traffic goes through it (point the SDK at it with AWS_ENDPOINT_URL_EC2; every other
service talks to moto directly). It forwards each request to moto unchanged, except:

* RunInstances with a ClientToken seen before returns the first call's response (EC2's
  idempotency: the same token never starts a second instance). A different instance type
  under the same token is refused with IdempotentParameterMismatch, as EC2 does.
* RunInstances for an instance type with an injected fault answers that EC2 error instead
  (the fault's count goes down; -1 = for ever). Faults are set per instance type, or per market
  (`"market": "spot"`: every spot launch, as a region-wide quota such as
  MaxSpotInstanceCountExceeded refuses them; a market fault is checked first).
* DescribeInstances shows instances "interrupted" through the control API as terminated with
  state reason Server.SpotInstanceTermination (moto only knows user-initiated termination).

Control API (JSON), under /_spotfit/:
  POST   /_spotfit/faults     {"instance_type": "m7i.large", "code": "InsufficientInstanceCapacity", "count": 1}
                               or {"market": "spot", "code": "MaxSpotInstanceCountExceeded", "count": 3}
  DELETE /_spotfit/faults     clear all faults
  GET    /_spotfit/calls      every RunInstances seen: instance type, client token, outcome
  POST   /_spotfit/interrupt  {"instance_id": "i-…"}: terminate it as a spot interruption would
  GET    /_spotfit/health

Usage: ec2_fault_proxy.py LISTEN_PORT MOTO_URL
"""

import http.client
import json
import sys
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FAULTS = {}  # instance type -> {"code": str, "count": int}
TOKENS = {}  # client token -> (instance type, status, headers, body)
CALLS = []  # {"instance_type", "client_token", "outcome"}
INTERRUPTED = set()
MOTO = None  # (host, port)


def ec2_error(code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()
    return 400, {"Content-Type": "text/xml;charset=UTF-8"}, body


def forward(method, path, headers, body):
    conn = http.client.HTTPConnection(MOTO[0], MOTO[1], timeout=60)
    try:
        fwd = {k: v for k, v in headers.items() if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
        # Exactly the client's headers: moto checks the SigV4 signature over them, so http.client
        # must not add its own (Host, Accept-Encoding).
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in fwd.items():
            conn.putheader(k, v)
        if body and not any(k.lower() == "content-length" for k in fwd):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in ("transfer-encoding", "connection", "content-length")}
        return resp.status, out, data
    finally:
        conn.close()


def terminate_in_moto(instance_id, headers):
    """Terminates as EC2 itself would: signed with the credentials this layer was started with
    (the set-up's admin), since moto may be enforcing IAM."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=f"http://{MOTO[0]}:{MOTO[1]}", region_name="us-east-1")
    try:
        ec2.terminate_instances(InstanceIds=[instance_id])
        return 200, {}, b""
    except Exception as e:  # reported to the caller of the control API
        return 500, {}, str(e).encode()


def mark_interrupted(body):
    """Rewrites DescribeInstances output: interrupted instances get the spot state reason."""
    if not INTERRUPTED:
        return body
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    ET.register_namespace("", ns)
    for item in root.iter(q("item")):
        iid = item.find(q("instanceId"))
        if iid is None or iid.text not in INTERRUPTED:
            continue
        reason = item.find(q("stateReason"))
        if reason is None:
            reason = ET.SubElement(item, q("stateReason"))
        for child in list(reason):
            reason.remove(child)
        ET.SubElement(reason, q("code")).text = "Server.SpotInstanceTermination"
        ET.SubElement(reason, q("message")).text = "Server.SpotInstanceTermination: Spot instance termination"
    return ET.tostring(root, xml_declaration=True, encoding="UTF-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, status, obj):
        self.reply(status, {"Content-Type": "application/json"}, json.dumps(obj).encode())

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def control(self, method, body):
        path = self.path.split("?")[0]
        with LOCK:
            if path == "/_spotfit/health":
                return self.json(200, {"ok": True})
            if path == "/_spotfit/faults" and method == "POST":
                f = json.loads(body or b"{}")
                key = f"market:{f['market']}" if "market" in f else f["instance_type"]
                FAULTS[key] = {"code": f.get("code", "InsufficientInstanceCapacity"), "count": int(f.get("count", 1))}
                return self.json(200, FAULTS)
            if path == "/_spotfit/faults" and method == "DELETE":
                FAULTS.clear()
                return self.json(200, FAULTS)
            if path == "/_spotfit/faults":
                return self.json(200, FAULTS)
            if path == "/_spotfit/calls" and method == "DELETE":
                CALLS.clear()
                return self.json(200, CALLS)
            if path == "/_spotfit/calls":
                return self.json(200, CALLS)
            if path == "/_spotfit/interrupt" and method == "POST":
                iid = json.loads(body or b"{}")["instance_id"]
                INTERRUPTED.add(iid)
        if path == "/_spotfit/interrupt":
            status, _, data = terminate_in_moto(iid, self.headers)
            return self.json(200 if status == 200 else 500, {"instance_id": iid, "moto_status": status})
        return self.json(404, {"error": f"unknown control path {path}"})

    def handle_any(self, method):
        body = self.body()
        if self.path.startswith("/_spotfit/"):
            return self.control(method, body)
        form = {}
        if method == "POST" and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form = dict(urllib.parse.parse_qsl(body.decode()))
        action = form.get("Action")
        if action == "RunInstances":
            itype = form.get("InstanceType", "")
            token = form.get("ClientToken")
            with LOCK:
                if token and token in TOKENS:
                    first_type, status, headers, data = TOKENS[token]
                    if first_type != itype:
                        CALLS.append({"instance_type": itype, "client_token": token, "outcome": "IdempotentParameterMismatch"})
                        return self.reply(*ec2_error("IdempotentParameterMismatch", "token reused with other parameters"))
                    CALLS.append({"instance_type": itype, "client_token": token, "outcome": "replayed"})
                    return self.reply(status, headers, data)
                market = form.get("InstanceMarketOptions.MarketType") or "on-demand"
                for key in (f"market:{market}", itype):
                    fault = FAULTS.get(key)
                    if fault and fault["count"] != 0:
                        if fault["count"] > 0:
                            fault["count"] -= 1
                        CALLS.append({"instance_type": itype, "market": market, "client_token": token, "outcome": fault["code"]})
                        msg = f"{fault['code']} for {itype} ({market}), injected by ec2_fault_proxy."
                        return self.reply(*ec2_error(fault["code"], msg))
                # Launch under the lock so a concurrent retry with the same token waits and replays.
                status, headers, data = forward(method, self.path, dict(self.headers), body)
                outcome = "launched" if status == 200 else f"moto {status}"
                CALLS.append({"instance_type": itype, "market": market, "client_token": token, "outcome": outcome})
                if token and status == 200:
                    TOKENS[token] = (itype, status, headers, data)
                return self.reply(status, headers, data)
        status, headers, data = forward(method, self.path, dict(self.headers), body)
        if action == "DescribeInstances" and status == 200:
            with LOCK:
                data = mark_interrupted(data)
        return self.reply(status, headers, data)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_PUT(self):
        self.handle_any("PUT")


def main():
    global MOTO
    port = int(sys.argv[1])
    u = urllib.parse.urlparse(sys.argv[2])
    MOTO = (u.hostname, u.port)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
