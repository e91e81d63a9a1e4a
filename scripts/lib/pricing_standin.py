#!/usr/bin/env python3
"""A stand-in for the AWS Price List Query API (moto has none): AWSPriceListService.GetProducts
over the JSON 1.1 protocol, answering with the documented response shape — `PriceList` entries
that are JSON *strings* (product attributes, OnDemand terms with price dimensions per unit),
`FormatVersion` aws_v1, and `NextToken` pages of 100 — from a JSON file of
{instance type: USD per hour}. Requests whose ServiceCode is not AmazonEC2 are refused, and the
TERM_MATCH filters on regionCode and operatingSystem are applied; every request is logged (one
JSON line) for the tests to read. It does not check signatures or IAM.

Usage: pricing_standin.py PRICES_JSON PORT LOG [--region us-east-1]
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = 100


def product(instance_type, region, usd):
    sku = f"SKU{abs(hash(instance_type)) % 10**10:010d}"
    return json.dumps({
        "product": {
            "productFamily": "Compute Instance",
            "sku": sku,
            "attributes": {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux",
                           "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"},
        },
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {"priceDimensions": {
            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                                             "pricePerUnit": {"USD": f"{usd:.10f}"}}}}}},
        "version": "20261201000000",
        "publicationDate": "2026-12-01T00:00:00Z",
    })


def main():
    prices, port, log = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
    region = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--region" else "us-east-1"
    names = sorted(prices)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            target = self.headers.get("X-Amz-Target")
            with open(log, "a") as f:
                f.write(json.dumps({"target": target, "filters": body.get("Filters"), "token": body.get("NextToken")}) + "\n")
            if target != "AWSPriceListService.GetProducts" or body.get("ServiceCode") != "AmazonEC2":
                return self.answer(400, {"__type": "InvalidParameterException", "message": f"unsupported: {target} {body.get('ServiceCode')}"})
            f = {x["Field"]: x["Value"] for x in body.get("Filters") or []}
            if f.get("regionCode", region) != region or f.get("operatingSystem", "Linux") != "Linux":
                return self.answer(200, {"FormatVersion": "aws_v1", "PriceList": []})
            start = int(body.get("NextToken") or 0)
            page = names[start:start + PAGE]
            out = {"FormatVersion": "aws_v1", "PriceList": [product(t, region, prices[t]) for t in page]}
            if start + PAGE < len(names):
                out["NextToken"] = str(start + PAGE)
            self.answer(200, out)

    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


if __name__ == "__main__":
    main()
