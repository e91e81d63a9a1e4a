"""The live half of `scripts/build-catalog --live`: writes the CSVs the offline build reads
(the layout of shared/data/aws, see data/catalog/README.md) from the AWS APIs, so the snapshot can
be refreshed without the offline files. Needs boto3 and credentials that may call, in each region:
ec2:DescribeInstanceTypes, ec2:DescribeInstanceTypeOfferings, ec2:DescribeSpotPriceHistory, and
pricing:GetProducts (the Pricing API answers in us-east-1 only).

What no AWS API serves stays offline: the benchmark scores (Spare Cores' performance.csv) and,
unless its public file can be fetched, the Spot Advisor's interruption buckets and savings.

Every listing is read to its last page; a region that fails fails the build (a partial catalog is
worse than an old one). The spot price written is the lowest price in force now over the
region's zones ("observed"), and each zone's, instead of the Advisor's estimate.
"""
import csv
import json
import os
import shutil
import sys
import urllib.request
from datetime import datetime, timezone

ADVISOR_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
BUCKET_OF = {"<5%": 0, "5-10%": 1, "10-15%": 2, "15-20%": 3, ">20%": 4}


def log(msg):
    print(f"build-catalog --live: {msg}", file=sys.stderr)


def pages(client, op, key, **kw):
    """Every item of a paginated listing."""
    for page in client.get_paginator(op).paginate(**kw):
        yield from page.get(key, [])


def instance_types(ec2):
    out = {}
    for t in pages(ec2, "describe_instance_types", "InstanceTypes"):
        name = t["InstanceType"]
        archs = t.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
        arch = "arm64" if "arm64" in archs else ("x86_64" if "x86_64" in archs else (archs[0] if archs else ""))
        gpus = t.get("GpuInfo", {}).get("Gpus", [])
        gpu_count = sum(g.get("Count", 0) for g in gpus)
        gpu_mem = gpus[0].get("MemoryInfo", {}).get("SizeInMiB", 0) if gpus else 0
        accel = "inference" if t.get("InferenceAcceleratorInfo") else ("fpga" if t.get("FpgaInfo") else "")
        if t.get("NeuronInfo"):
            accel = "neuron"
        if t.get("MediaAcceleratorInfo"):
            accel = "media"
        out[name] = {
            "instance_type": name,
            "family": name.split(".")[0],
            "current_generation": str(bool(t.get("CurrentGeneration"))).lower(),
            "vcpus": t["VCpuInfo"]["DefaultVCpus"],
            "memory_mib": t["MemoryInfo"]["SizeInMiB"],
            "arch": arch,
            "gpu_count": gpu_count,
            "gpu_memory_mib_each": gpu_mem if gpu_count else "",
            "accel_kind": accel,
            "spot_supported": str("spot" in t.get("SupportedUsageClasses", [])).lower(),
            "burstable": str(bool(t.get("BurstablePerformanceSupported"))).lower(),
        }
    return out


def on_demand(pricing, region):
    """Linux, shared tenancy, no pre-installed software, capacity in use: the price a plain
    RunInstances pays. GetProducts returns each product as a JSON string."""
    filters = [
        ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
        ("preInstalledSw", "NA"), ("capacitystatus", "Used"), ("licenseModel", "No License required"),
    ]
    out = {}
    for raw in pages(pricing, "get_products", "PriceList", ServiceCode="AmazonEC2",
                     Filters=[{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters]):
        doc = json.loads(raw) if isinstance(raw, str) else raw
        t = doc.get("product", {}).get("attributes", {}).get("instanceType")
        for term in doc.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if t and usd and float(usd) > 0 and dim.get("unit") == "Hrs":
                    out[t] = min(out.get(t, float("inf")), float(usd))
    return out


def spot_now(ec2):
    """The price in force now per (type, AZ id), Linux/UNIX."""
    ids = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    now = datetime.now(timezone.utc)
    latest = {}
    for r in pages(ec2, "describe_spot_price_history", "SpotPriceHistory", StartTime=now, EndTime=now,
                   ProductDescriptions=["Linux/UNIX"]):
        az = r.get("AvailabilityZoneId") or ids.get(r.get("AvailabilityZone"))
        if not az:
            continue
        key = (r["InstanceType"], az)
        if key not in latest or r["Timestamp"] > latest[key][0]:
            latest[key] = (r["Timestamp"], float(r["SpotPrice"]))
    return {k: v[1] for k, v in latest.items()}


def advisor(offline_dir):
    """(region, type) → (savings %, bucket): the public file if reachable, else the offline copy."""
    try:
        doc = json.load(urllib.request.urlopen(ADVISOR_URL, timeout=10))
        ranges = {r["index"]: r["label"] for r in doc["ranges"]}
        out = {}
        for region, oses in doc["spot_advisor"].items():
            for t, v in oses.get("Linux", {}).items():
                out[(region, t)] = (v["s"], BUCKET_OF.get(ranges.get(v["r"]), None))
        log(f"Spot Advisor: {ADVISOR_URL} ({len(out)} rows)")
        return out
    except Exception as e:  # no network to the public file: the offline copy, said so
        path = os.path.join(offline_dir, "spot-advisor.csv")
        log(f"Spot Advisor: {ADVISOR_URL} unreachable ({e}); using {path}")
        with open(path, newline="", encoding="utf-8") as f:
            return {(r["region"], r["instance_type"]): (int(r["savings_vs_ondemand_pct"]), int(r["interruption_bucket"]))
                    for r in csv.DictReader(f) if r["os"] == "Linux"}


def write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def fetch(regions, out_dir, offline_dir, session=None):
    """Writes the live CSVs for `regions` into `out_dir`; returns counts for the log."""
    import boto3

    session = session or boto3.session.Session()
    pricing = session.client("pricing", region_name="us-east-1")
    day = datetime.now(timezone.utc).date().isoformat()
    types, offered, az_rows, od_rows, spot_rows = {}, [], [], [], []
    for region in regions:
        ec2 = session.client("ec2", region_name=region)
        types.update(instance_types(ec2))
        offered += [{"region": region, "instance_type": o["InstanceType"]}
                    for o in pages(ec2, "describe_instance_type_offerings", "InstanceTypeOfferings", LocationType="region")]
        az_rows += [{"region": region, "az_id": o["Location"], "instance_type": o["InstanceType"]}
                    for o in pages(ec2, "describe_instance_type_offerings", "InstanceTypeOfferings", LocationType="availability-zone-id")]
        od_rows += [{"region": region, "instance_type": t, "price_per_hour": p, "currency": "USD",
                     "source": f"aws-pricing-{day}", "snapshot_date": day} for t, p in sorted(on_demand(pricing, region).items())]
        spot = spot_now(ec2)
        by_type = {}
        for (t, az), p in spot.items():
            spot_rows.append({"region": region, "az_id": az, "instance_type": t, "price_per_hour": p, "currency": "USD",
                              "statistic": "in_force", "source": f"aws-describe-spot-price-history-{day}", "snapshot_date": day})
            by_type[t] = min(by_type.get(t, p), p)
        spot_rows += [{"region": region, "az_id": "", "instance_type": t, "price_per_hour": p, "currency": "USD",
                       "statistic": "min_over_azs", "source": f"aws-describe-spot-price-history-{day}", "snapshot_date": day}
                      for t, p in sorted(by_type.items())]
        log(f"{region}: {len(spot)} spot pools, {sum(1 for r in od_rows if r['region'] == region)} on-demand prices")
    os.makedirs(out_dir, exist_ok=True)
    write(os.path.join(out_dir, "instance-types.csv"),
          ["instance_type", "family", "current_generation", "vcpus", "memory_mib", "arch", "gpu_count",
           "gpu_memory_mib_each", "accel_kind", "spot_supported", "burstable"], types.values())
    write(os.path.join(out_dir, "offerings-region.csv"), ["region", "instance_type"], offered)
    write(os.path.join(out_dir, "offerings-az.csv"), ["region", "az_id", "instance_type"], az_rows)
    write(os.path.join(out_dir, "prices-ondemand.csv"),
          ["region", "instance_type", "price_per_hour", "currency", "source", "snapshot_date"], od_rows)
    write(os.path.join(out_dir, "prices-spot.csv"),
          ["region", "az_id", "instance_type", "price_per_hour", "currency", "statistic", "source", "snapshot_date"], spot_rows)
    # The Advisor's buckets, with its estimate beside them (the offline build's input); the live
    # build prefers the observed price over the estimate (build-catalog --live).
    od = {(r["region"], r["instance_type"]): r["price_per_hour"] for r in od_rows}
    adv = advisor(offline_dir)
    write(os.path.join(out_dir, "prices-spot-estimated.csv"),
          ["region", "instance_type", "est_spot_price_per_hour", "currency", "interruption_bucket"],
          [{"region": r, "instance_type": t, "est_spot_price_per_hour": round(od[(r, t)] * (1 - s / 100), 6),
            "currency": "USD", "interruption_bucket": b}
           for (r, t), (s, b) in sorted(adv.items()) if (r, t) in od and b is not None])
    shutil.copy(os.path.join(offline_dir, "performance.csv"), os.path.join(out_dir, "performance.csv"))
    return {"types": len(types), "offers": len(offered), "spot_pools": sum(1 for r in spot_rows if r["az_id"]),
            "on_demand": len(od_rows)}
