#!/usr/bin/env python3
"""Stand-in for the EC2 instances moto pretends to start: for each new spotfit-managed
instance, fetch its user data from the emulator and run it, as cloud-init would, with bash.
The script's outside world is replaced on PATH only where a laptop differs from an instance:
`curl` answers the IMDSv2 token and instance-id calls, `aws s3 cp` downloads the agent from
the emulated bucket (boto3), `aws ecr get-login-password` answers with the emulator's ECR token
(GetAuthorizationToken), `docker` is podman (no Docker engine here), `iptables` and `shutdown`
are logged. When the script ends, the instance is
terminated (InstanceInitiatedShutdownBehavior=terminate); when the pipeline terminates the
instance first, the script's process group is killed (the machine is gone).

  instance_standin.py WORKDIR [--interrupt-run RUN_ID --after S] [--hang-run RUN_ID]...
                              [--instant [--workers N] [--poll-s S]]

With --interrupt-run, the first attempt of that run is interrupted S seconds after it starts:
EC2's "EC2 Spot Instance Interruption Warning" event for it is put on the bus first
($SPOTFIT_PUT_EVENT, which `scripts/local-stack start` exports: event_pump.py put), then its
processes are killed and the fault layer marks it terminated by a spot interruption. (On AWS the
warning comes two minutes before the end; here the end follows at once.)

With --hang-run, the instances of that run boot but never run their user data (a hung boot: no
agent, no marker, no shutdown), so only the attempt's deadline ends it.

With --instant (the soak: scripts/soak), no user data runs: for each new instance the stand-in
writes at once what the agent writes at the end of a run that exited 0 — the run summary
(`runs/job=J/dt=D/RUN.json`, a RunSummary) and then the exit marker (`…/RUN.exit`, an
ExitMarker), with the job and run id the rendered user data carries (JOB_NAME, RUN_ID) and on
the instance role's credentials — and then terminates the instance, as the user data's
`shutdown -h now` does under InstanceInitiatedShutdownBehavior=terminate. It describes only
live instances (pending, running; the managed tag checked here, as moto's tag filter costs a
walk of its tag store per instance it ever had) every S seconds (default 0.2), and handles new ones on
N threads (default 4).
Each marker is logged to WORKDIR/instant.jsonl: instance, run, attempt, key, put time (ms).

The stand-in itself plays EC2 (it describes and terminates with the caller's, the set-up's,
credentials); what runs "on the instance" (the user data, the agent, `aws s3 cp`) gets the STS
credentials of its instance profile's role, as IMDS would hand them out: a job role's
(SPOTFIT_ROLES_DIR/roles.json) or else the instance role's (SPOTFIT_ROLES_DIR/instance.env).
Runs until SIGTERM; writes WORKDIR/standin.log.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3

WORK = sys.argv[1]
ARGS = sys.argv[2:]
INTERRUPT_RUN = ARGS[ARGS.index("--interrupt-run") + 1] if "--interrupt-run" in ARGS else None
INTERRUPT_AFTER = float(ARGS[ARGS.index("--after") + 1]) if "--after" in ARGS else 2.0
HANG_RUNS = {ARGS[i + 1] for i, a in enumerate(ARGS) if a == "--hang-run"}
INSTANT = "--instant" in ARGS
WORKERS = int(ARGS[ARGS.index("--workers") + 1]) if "--workers" in ARGS else 4
POLL_S = float(ARGS[ARGS.index("--poll-s") + 1]) if "--poll-s" in ARGS else 0.2
PUT_EVENT = os.environ.get("SPOTFIT_PUT_EVENT")
if INTERRUPT_RUN and not PUT_EVENT:
    sys.exit("instance_standin: --interrupt-run needs SPOTFIT_PUT_EVENT (source the local stack's env) to send EC2's interruption warning")
EC2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL_EC2"], region_name=os.environ["AWS_REGION"])
LOG = open(os.path.join(WORK, "standin.log"), "a", buffering=1)
BIN = os.path.join(WORK, "bin")


def instance_creds():
    roles = os.environ.get("SPOTFIT_ROLES_DIR")
    if not roles:
        sys.exit("instance_standin: SPOTFIT_ROLES_DIR is not set: the instance must run on its role's credentials")
    with open(os.path.join(roles, "instance.env"), encoding="utf-8") as f:
        pairs = f.read().replace("export ", "").split()
    return dict(p.split("=", 1) for p in pairs)


INSTANCE_CREDS = instance_creds()


def profile_creds(iid):
    """What IMDS would hand this instance: the credentials of its instance profile's role. A job
    role's profile (SPOTFIT_ROLES_DIR/roles.json, "profile_arn") gives that role's session;
    any other profile, the instance role's."""
    path = os.path.join(os.environ["SPOTFIT_ROLES_DIR"], "roles.json")
    if not os.path.exists(path):  # a roles dir with the instance role alone (no template roles)
        return INSTANCE_CREDS
    with open(path, encoding="utf-8") as f:
        roles = json.load(f)
    inst = EC2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    arn = (inst.get("IamInstanceProfile") or {}).get("Arn")
    for comp, r in roles.items():
        if arn and r.get("profile_arn") == arn:
            log("instance", iid, "runs with", comp)
            return {"AWS_ACCESS_KEY_ID": r["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": r["SecretAccessKey"], "AWS_SESSION_TOKEN": r["SessionToken"]}
    return INSTANCE_CREDS

STUBS = {
    "curl": """#!/bin/bash
for a in "$@"; do case "$a" in *api/token) echo standin-token; exit 0;; *instance-id) echo "$STANDIN_INSTANCE_ID"; exit 0;; esac; done
exit 22
""",
    "shutdown": """#!/bin/bash
echo "shutdown $*" >> "$SPOTFIT_HOME/shutdown.log"
""",
    "aws": f"""#!{sys.executable}
# aws s3 cp [--only-show-errors] s3://BUCKET/KEY DEST, from the emulated bucket;
# aws ecr get-login-password --region R: the password of the emulator's ECR token (GetAuthorizationToken
# on the instance role's credentials; the token is base64 of "AWS:PASSWORD"), on stdout only
import base64, os, sys, boto3
if sys.argv[1:3] == ["ecr", "get-login-password"]:
    region = sys.argv[sys.argv.index("--region") + 1] if "--region" in sys.argv else os.environ["AWS_REGION"]
    ecr = boto3.client("ecr", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    assert user == "AWS", "an ECR token is for the user AWS"
    sys.stdout.write(password)
    sys.exit(0)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
assert args[:2] == ["s3", "cp"], args
bucket, key = args[2][len("s3://"):].split("/", 1)
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).download_file(bucket, key, args[3])
""",
    # No Docker engine on a test machine: the user data's `docker login` and the agent's
    # `docker run`/`inspect`/`rm` go to podman (its configuration from CONTAINERS_CONF etc. in
    # the stand-in's environment; scripts/lib/containers.sh sets them).
    "docker": """#!/bin/bash
exec podman "$@"
""",
    # The user data's firewall rule for containers (IMDS dropped) is the instance's, not this
    # machine's: logged, not applied. Every other call is podman's network stack (netavark)
    # setting up the container's bridge on this machine, and goes to the real iptables (a stub
    # answering nothing fails every container: "netavark: invalid version number").
    "iptables": """#!/bin/bash
echo "iptables $*" >> "$SPOTFIT_HOME/iptables.log"
case " $* " in *DOCKER-USER*) exit 0;; esac
PATH="${PATH#*:}" exec iptables "$@"
""",
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=LOG)


def managed():
    out = {}
    pages = EC2.get_paginator("describe_instances").paginate(Filters=[{"Name": "tag:spotfit:managed", "Values": ["true"]}])
    for page in pages:
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                out[i["InstanceId"]] = (i["State"]["Name"], tags)
    return out


def start(iid, tags):
    ud = EC2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    home = os.path.join(WORK, iid)
    os.makedirs(home, exist_ok=True)
    script = os.path.join(home, "user-data.sh")
    with open(script, "wb") as f:
        f.write(base64.b64decode(ud))
    tmp = os.path.join(home, "tmp")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", SPOTFIT_HOME=home, STANDIN_INSTANCE_ID=iid,
               # This machine's own disks are not the instance's: no instance store to format.
               SPOTFIT_DISK_BY_ID=os.path.join(home, "no-instance-store"),
               # The instance's temporary files (the agent's spool, a container's env file) stay
               # in its home, where the tests can search them.
               TMPDIR=tmp, **profile_creds(iid))
    out = open(os.path.join(home, "console.log"), "wb")
    p = subprocess.Popen(["bash", script], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    log("started", iid, tags.get("spotfit:run-id"), tags.get("spotfit:attempt"), "pid", p.pid)
    return p


def fault(path, body):
    req = urllib.request.Request(os.environ["SPOTFIT_FAULTS_URL"] + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req).read()


def interruption_warning(iid):
    """EC2's two-minute warning, in AWS's envelope, on the event bus."""
    import shlex
    import uuid

    region = os.environ.get("AWS_REGION", "us-east-1")
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Spot Instance Interruption Warning",
             "source": "aws.ec2", "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "region": region, "resources": [f"arn:aws:ec2:{region}:123456789012:instance/{iid}"],
             "detail": {"instance-id": iid, "instance-action": "terminate"}}
    p = subprocess.run(shlex.split(PUT_EVENT), input=json.dumps(event).encode(), capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"SPOTFIT_PUT_EVENT failed ({p.returncode}): {p.stderr.decode(errors='replace')[-500:]}")
    log("interruption warning for", iid, p.stdout.decode().strip())


def user_data_field(script: str, name: str) -> str:
    """NAME='value' from the rendered user data (the renderer puts plain tokens in single quotes)."""
    import re

    m = re.search(rf"^{name}='([^']*)'$", script, flags=re.M)
    if not m:
        raise ValueError(f"no {name} in the user data")
    return m.group(1)


def instant_run(iid, tags, launched_ms, s3, lock, log_f):
    """The agent's last two writes for a job that ran for no time and exited 0, then shutdown."""
    ud = base64.b64decode(EC2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode()
    job, run_id, bucket = (user_data_field(ud, n) for n in ("JOB_NAME", "RUN_ID", "BUCKET"))
    now_ms = int(time.time() * 1000)
    started = min(launched_ms or now_ms, now_ms)
    day = time.strftime("%Y-%m-%d", time.gmtime(started / 1000))
    base = f"runs/job={job}/dt={day}/{run_id}"
    summary = {
        "job": job, "run_id": run_id, "started_at_ms": started, "ended_at_ms": now_ms,
        "duration_s": max(0.001, (now_ms - started) / 1000), "samples": 1,
        "cpu": {"avg": 0.5, "p50": 0.5, "p95": 0.9, "max": 1.0}, "mem_max_bytes": 64 << 20, "mem_metric": "rss",
        "io": {"disk_read_bytes": 0, "disk_write_bytes": 0, "net_rx_bytes": 0, "net_tx_bytes": 0},
        "exit": {"code": 0}, "oom_killed": False, "status": "succeeded",
    }
    marker = {"run_id": run_id, "job": job, "ended_at_ms": now_ms, "status": "succeeded", "exit": {"code": 0}, "spot_notice": None}
    s3.put_object(Bucket=bucket, Key=base + ".json", Body=json.dumps(summary).encode(), ContentType="application/json")
    s3.put_object(Bucket=bucket, Key=base + ".exit", Body=json.dumps(marker).encode(), ContentType="application/json")
    put_ms = int(time.time() * 1000)
    EC2.terminate_instances(InstanceIds=[iid])
    with lock:
        log_f.write(json.dumps({"instance_id": iid, "run_id": tags.get("spotfit:run-id"), "attempt": tags.get("spotfit:attempt"),
                                "agent_run_id": run_id, "job": job, "key": base + ".exit", "marker_put_ms": put_ms,
                                "terminated_ms": int(time.time() * 1000)}) + "\n")


def main_instant():
    """--instant: every new live instance gets its summary and marker at once, then is terminated."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"],
                      aws_access_key_id=INSTANCE_CREDS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=INSTANCE_CREDS["AWS_SECRET_ACCESS_KEY"],
                      aws_session_token=INSTANCE_CREDS.get("AWS_SESSION_TOKEN"))
    lock = threading.Lock()
    log_f = open(os.path.join(WORK, "instant.jsonl"), "a", buffering=1)
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    handled = set()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # The state filter only, the tag checked here: moto evaluates a tag filter against its whole
    # tag store for every instance it ever had (1.2 s a call at 1,200 terminated instances, against
    # 14 ms for the state filter alone).
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]

    def one(iid, tags, launched_ms):
        try:
            instant_run(iid, tags, launched_ms, s3, lock, log_f)
        except Exception as e:  # logged; the pipeline's deadline and reaper are the backstop
            log("instant run of", iid, "failed:", repr(e))
            with lock:
                handled.discard(iid)  # retried on the next poll while it is still live

    while not stop:
        try:
            live = []
            for page in EC2.get_paginator("describe_instances").paginate(Filters=filters):
                for r in page["Reservations"]:
                    for i in r["Instances"]:
                        live.append(i)
        except Exception as e:  # the emulator may be going away
            log("describe failed", e)
            time.sleep(0.5)
            continue
        for i in live:
            iid = i["InstanceId"]
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            if tags.get("spotfit:managed") != "true":
                continue
            with lock:
                if iid in handled:
                    continue
                handled.add(iid)
            if tags.get("spotfit:run-id") in HANG_RUNS:
                log("hung boot of", iid, tags.get("spotfit:run-id"))
                continue
            lt = i.get("LaunchTime")
            pool.submit(one, iid, tags, int(lt.timestamp() * 1000) if lt else None)
        time.sleep(POLL_S)
    pool.shutdown(wait=False, cancel_futures=True)


def main():
    if INSTANT:
        return main_instant()
    os.makedirs(BIN, exist_ok=True)
    for name, body in STUBS.items():
        path = os.path.join(BIN, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    running = {}  # iid -> (Popen, started_at, tags)
    done = set()
    interrupted = False
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        try:
            seen = managed()
        except Exception as e:  # the emulator may be going away
            log("describe failed", e)
            time.sleep(0.5)
            continue
        for iid, (state, tags) in seen.items():
            if iid in done or iid in running:
                if iid in running and state in ("shutting-down", "terminated"):
                    p = running.pop(iid)[0]
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
                        log("instance", iid, state, "by the pipeline: killed its processes")
                    done.add(iid)
                continue
            if state in ("pending", "running") and tags.get("spotfit:run-id") in HANG_RUNS:
                done.add(iid)
                log("hung boot of", iid, tags.get("spotfit:run-id"))
            elif state in ("pending", "running"):
                running[iid] = (start(iid, tags), time.time(), tags)
        for iid, (p, t0, tags) in list(running.items()):
            if (INTERRUPT_RUN and not interrupted and tags.get("spotfit:run-id") == INTERRUPT_RUN
                    and time.time() - t0 > INTERRUPT_AFTER and p.poll() is None):
                interruption_warning(iid)
                os.killpg(p.pid, signal.SIGKILL)
                fault("/interrupt", {"instance_id": iid})
                interrupted = True
                running.pop(iid)
                done.add(iid)
                log("interrupted", iid)
                continue
            if p.poll() is not None:
                EC2.terminate_instances(InstanceIds=[iid])
                running.pop(iid)
                done.add(iid)
                log("user data of", iid, "exited", p.returncode, "-> instance terminated")
        time.sleep(0.3)
    for iid, (p, _, _) in running.items():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
