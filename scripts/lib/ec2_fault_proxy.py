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
* DescribeSpotPriceHistory answers from a seeded price history once one is set (moto's own is
  one fake $0.00001 row per type and zone): EC2's semantics as documented — the rows whose
  timestamp falls in [StartTime, EndTime] plus, per pool, the price in force at StartTime;
  newest first; InstanceType.N, ProductDescription.N, AvailabilityZone(Id) and the
  availability-zone / instance-type filters; MaxResults (≤ 1000) pages with NextToken. moto
  sees the request first, so IAM is still enforced. Faults: `throttle` answers the next N
  calls with RequestLimitExceeded; `fail_after_pages` K answers every call for a page after
  the K-th of a listing with `code` (a listing cut short), `count` times (-1: for ever).

Control API (JSON), under /_spotfit/:
  POST   /_spotfit/faults     {"instance_type": "m7i.large", "code": "InsufficientInstanceCapacity", "count": 1}
                               or {"market": "spot", "code": "MaxSpotInstanceCountExceeded", "count": 3}
  DELETE /_spotfit/faults     clear all faults
  GET    /_spotfit/calls      every RunInstances seen: instance type, client token, outcome
  POST   /_spotfit/interrupt  {"instance_id": "i-…"}: terminate it as a spot interruption would
  POST   /_spotfit/spot-prices  {"prices": [{"instance_type", "az": "us-east-1a", "az_id": "use1-az6",
                                 "price": 0.05, "at": "2026-12-03T12:00:00Z"}, …]}: the seeded history
  DELETE /_spotfit/spot-prices  back to moto's answers
  POST   /_spotfit/spot-price-faults {"throttle": 2} | {"fail_after_pages": 1, "code": "InternalError", "count": -1}
  DELETE /_spotfit/spot-price-faults
  GET    /_spotfit/spot-price-calls  {"calls": N, "rows": M}: DescribeSpotPriceHistory calls answered
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
SPOT_PRICES = []  # seeded history: {"instance_type", "az", "az_id", "price", "at"}
SPOT_FAULTS = {}  # {"throttle": n, "fail_after_pages": k, "code": str, "count": n}
SPOT_CALLS = {"calls": 0, "rows": 0}


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


def iso(ts):
    return ts.replace("+00:00", "Z")


def parse_time(v):
    from datetime import datetime, timezone
    if v is None:
        return None
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def spot_price_history(form):
    """The seeded history as EC2 answers DescribeSpotPriceHistory (see the module doc)."""
    from datetime import datetime, timezone
    listed = lambda prefix: [v for k, v in form.items() if k.startswith(prefix + ".")]
    types = set(listed("InstanceType"))
    products = set(listed("ProductDescription"))
    zones = {form[k] for k in ("AvailabilityZone",) if k in form}
    zone_ids = {form[k] for k in ("AvailabilityZoneId",) if k in form}
    i = 1
    while f"Filter.{i}.Name" in form:
        vals = {v for k, v in form.items() if k.startswith(f"Filter.{i}.Value.")}
        name = form[f"Filter.{i}.Name"]
        if name == "availability-zone":
            zones |= vals
        elif name == "instance-type":
            types |= vals
        elif name == "product-description":
            products |= vals
        i += 1
    now = datetime.now(timezone.utc)
    start = parse_time(form.get("StartTime")) or now
    end = parse_time(form.get("EndTime")) or now
    if products and not products & {"Linux/UNIX", "Linux/UNIX (Amazon VPC)"}:
        return []
    rows = [r for r in SPOT_PRICES
            if (not types or r["instance_type"] in types)
            and (not zones or r["az"] in zones)
            and (not zone_ids or r["az_id"] in zone_ids)]
    inside = [r for r in rows if start <= parse_time(r["at"]) <= end]
    in_force = {}
    for r in rows:
        t = parse_time(r["at"])
        key = (r["instance_type"], r["az"])
        if t <= start and (key not in in_force or t > parse_time(in_force[key]["at"])):
            in_force[key] = r
    out = {id(r): r for r in inside}
    for r in in_force.values():
        out.setdefault(id(r), r)
    return sorted(out.values(), key=lambda r: (parse_time(r["at"]), r["instance_type"], r["az"]), reverse=True)


def spot_price_response(form):
    SPOT_CALLS["calls"] += 1
    token = form.get("NextToken") or ""
    page = int(token.split(":")[0]) if token else 0
    if SPOT_FAULTS.get("throttle", 0) > 0:
        SPOT_FAULTS["throttle"] -= 1
        return ec2_error("RequestLimitExceeded", "Request limit exceeded (injected by ec2_fault_proxy).")
    k = SPOT_FAULTS.get("fail_after_pages")
    if k is not None and page >= k and SPOT_FAULTS.get("count", -1) != 0:
        if SPOT_FAULTS.get("count", -1) > 0:
            SPOT_FAULTS["count"] -= 1
        code = SPOT_FAULTS.get("code", "InternalError")
        status, headers, body = ec2_error(code, f"page {page + 1} lost (injected by ec2_fault_proxy)")
        return (500 if code == "InternalError" else status), headers, body
    rows = spot_price_history(form)
    size = max(1, min(int(form.get("MaxResults") or 1000), 1000))
    chunk = rows[page * size:(page + 1) * size]
    SPOT_CALLS["rows"] += len(chunk)
    items = "".join(
        f"<item><instanceType>{r['instance_type']}</instanceType><productDescription>Linux/UNIX</productDescription>"
        f"<spotPrice>{r['price']:.6f}</spotPrice><timestamp>{iso(parse_time(r['at']).isoformat())}</timestamp>"
        f"<availabilityZone>{r['az']}</availabilityZone></item>"
        for r in chunk
    )
    more = (page + 1) * size < len(rows)
    nxt = f"<nextToken>{page + 1}:{uuid.uuid4().hex[:8]}</nextToken>" if more else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>{uuid.uuid4()}</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet>{nxt}"
        "</DescribeSpotPriceHistoryResponse>"
    ).encode()
    return 200, {"Content-Type": "text/xml;charset=UTF-8"}, body


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
            if path == "/_spotfit/spot-prices" and method == "POST":
                SPOT_PRICES[:] = json.loads(body or b"{}")["prices"]
                return self.json(200, {"rows": len(SPOT_PRICES)})
            if path == "/_spotfit/spot-prices" and method == "DELETE":
                SPOT_PRICES.clear()
                return self.json(200, {"rows": 0})
            if path == "/_spotfit/spot-price-faults" and method == "POST":
                SPOT_FAULTS.clear()
                SPOT_FAULTS.update(json.loads(body or b"{}"))
                return self.json(200, SPOT_FAULTS)
            if path == "/_spotfit/spot-price-faults" and method == "DELETE":
                SPOT_FAULTS.clear()
                return self.json(200, SPOT_FAULTS)
            if path == "/_spotfit/spot-price-calls" and method == "DELETE":
                SPOT_CALLS.update(calls=0, rows=0)
                return self.json(200, SPOT_CALLS)
            if path == "/_spotfit/spot-price-calls":
                return self.json(200, SPOT_CALLS)
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
        # moto answered first (so IAM was checked); a seeded market replaces its fake rows.
        if action == "DescribeSpotPriceHistory" and status == 200:
            with LOCK:
                if SPOT_PRICES or SPOT_FAULTS:
                    return self.reply(*spot_price_response(form))
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
