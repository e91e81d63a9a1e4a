#!/usr/bin/env python3
"""EventBridge → Lambda for the local stack (docs/callback.md, "Local emulator").

moto holds the event bus: the template's rules are created there with their own patterns, each
targeting an SQS queue per function (`scripts/local-stack events`, which runs `setup` below), and
S3 sends its EventBridge notifications through them. This pump plays the rest of EventBridge and
Lambda's asynchronous invocation: it delivers each queued event to its function
(`$SPOTFIT_LOCAL_INVOKE COMPONENT`, the event on stdin, on the function role's credentials), at
least once and in no particular order, retrying a failed invocation up to the function's limit;
and it plays EC2, which moto does not: a state-change event for every managed instance that
changes state.

  event_pump.py setup DIR TEMPLATE   create the template's event rules, queues and the bucket's
                                     EventBridge notifications in moto; write DIR/events.json
  event_pump.py run DIR [--warm N] [--live-only]
                                     deliver events until SIGTERM (scripts/local-stack pump)
                                     --warm N (or SPOTFIT_PUMP_WARM=N): deliver through up to N
                                     warm `$SPOTFIT_LOCAL_INVOKE --serve COMPONENT` processes per
                                     function (Lambda's execution environments: one event at a
                                     time each, reused) instead of a cold process per delivery
                                     --live-only (or SPOTFIT_PUMP_LIVE_ONLY=1): the EC2 emitter
                                     describes only instances not yet terminated; one that drops
                                     out of that listing has been terminated (moto keeps
                                     terminated instances for ever, and its tag filter walks
                                     its tag store per instance: the state filter alone, the
                                     managed tag checked here)
                                     SPOTFIT_PUMP_EC2_POLL_S: the emitter's period (default 0.25 s)
  event_pump.py put DIR              put one event (an EventBridge envelope, JSON on stdin) on the
                                     default bus: $SPOTFIT_PUT_EVENT, for events AWS services emit
                                     (Step Functions status changes, spot interruption warnings)
  event_pump.py tick DIR RULE TIME [--deliveries N]
                                     fire schedule rule RULE (logical id or its prefix) as
                                     EventBridge would at TIME: its targets' inputs built from
                                     the "Scheduled Event" (input transformers applied), each
                                     delivered N times (a duplicate delivery) to its function
  event_pump.py selftest             unit tests of the pattern validation and matching

Files under DIR: events.json (rules, resolved patterns, queues, components), events.log (one JSON
line per delivery: event_id, component, source, detail_type, event_time, queued_at,
received_at, done_at, rc, attempt, stdout), events-dead.jsonl (events that failed every
delivery), events-emitted.jsonl (the EC2 events the emitter put), events-drop (instance ids,
one a line, the emitter puts no event for: "the instance vanished without a word").

Where moto 5.2 differs from EventBridge, and what is done about it:
* PutRule accepts patterns AWS rejects (two operators in one object, unknown operator names,
  `**` in a wildcard), and its matcher matches everything for an operator it does not know and
  only looks at an operator object's first key. `setup` validates every pattern by AWS's rules
  and fails on one AWS would refuse; the pump matches each event again by AWS's semantics
  (`matches` below) and drops, with a log line, what AWS would not have delivered.
* PutEvents routes to SQS through an input template that substitutes "<id>", "<time>", … even
  inside the event's detail strings and drops "account". The queues' targets carry the
  transformer "<aws.events.event.json>" (the whole event, unmodified) instead; the pump removes
  moto's "ingestion-time" and restores "account".
* Every S3 event carries the same id (17793124-…); the pump gives each queued message its own
  (stable across redeliveries of that message).
* PutEvents accepts sources starting with "aws." (AWS refuses them from accounts): that is what
  lets `put` and the EC2 emitter stand in for the services. Disabled rules still match in moto:
  `setup` does not create them.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "123456789012"
REGION = "us-east-1"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:spotfit"
MOTO_S3_EVENT_ID = "17793124-05d4-b198-2fde-7ededc63b103"
QUEUE_PREFIX = "spotfit-local-events-"
DEFAULT_DELIVERIES = 3  # EventBridge → Lambda is an asynchronous invocation: 1 + 2 retries
STDOUT_KEEP = 2000

# ------------------------------------------------------------------ patterns (AWS's rules)


class InvalidPattern(Exception):
    pass


LEAF_OPERATORS = {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "cidr", "wildcard"}
NUMERIC_OPS = {"<", "<=", "=", ">=", ">"}
_MISSING = object()


def _scalar(x) -> bool:
    return x is None or isinstance(x, (str, bool, int, float))


def _string_or_ignore_case(op, v, where):
    if isinstance(v, str):
        return
    if isinstance(v, dict) and list(v) == ["equals-ignore-case"] and isinstance(v["equals-ignore-case"], str):
        return
    raise InvalidPattern(f"{where}: {op} takes a string or {{\"equals-ignore-case\": string}}, not {json.dumps(v)}")


def _wildcard_ok(v, where):
    if not isinstance(v, str):
        raise InvalidPattern(f"{where}: wildcard takes a string")
    if "**" in v:
        raise InvalidPattern(f"{where}: consecutive wildcard characters are not allowed: {v!r}")


def validate(pattern, where: str = "pattern") -> None:
    """Raise InvalidPattern where EventBridge's PutRule would answer InvalidEventPatternException."""
    if not isinstance(pattern, dict) or not pattern:
        raise InvalidPattern(f"{where}: must be a non-empty JSON object")
    for k, v in pattern.items():
        w = f"{where}.{k}"
        if k == "$or":
            if not isinstance(v, list) or not v or not all(isinstance(p, dict) for p in v):
                raise InvalidPattern(f"{w}: $or takes a non-empty array of patterns")
            for i, p in enumerate(v):
                validate(p, f"{w}[{i}]")
        elif isinstance(v, dict):
            validate(v, w)
        elif isinstance(v, list):
            if not v:
                raise InvalidPattern(f"{w}: empty arrays are not allowed")
            for f in v:
                _validate_filter(f, w)
        else:
            raise InvalidPattern(f"{w}: must be an object or an array")


def _validate_filter(f, w):
    if _scalar(f):
        return
    if not isinstance(f, dict):
        raise InvalidPattern(f"{w}: array elements are values or operator objects, not {json.dumps(f)}")
    if len(f) != 1:
        raise InvalidPattern(f"{w}: one operator per object, got {sorted(f)} (AND on one field needs a wildcard)")
    (op, v), = f.items()
    if op not in LEAF_OPERATORS:
        raise InvalidPattern(f"{w}: unknown operator {op!r}")
    if op in ("prefix", "suffix"):
        _string_or_ignore_case(op, v, w)
    elif op == "equals-ignore-case":
        if not isinstance(v, str):
            raise InvalidPattern(f"{w}: equals-ignore-case takes a string")
    elif op == "exists":
        if not isinstance(v, bool):
            raise InvalidPattern(f"{w}: exists takes true or false")
    elif op == "wildcard":
        _wildcard_ok(v, w)
    elif op == "cidr":
        try:
            ipaddress.ip_network(v)
        except (ValueError, TypeError):
            raise InvalidPattern(f"{w}: cidr {v!r} is not a network")
    elif op == "numeric":
        if not isinstance(v, list) or not v or len(v) % 2 or len(v) > 4:
            raise InvalidPattern(f"{w}: numeric takes one or two (operator, number) pairs")
        for o, n in zip(v[::2], v[1::2]):
            if o not in NUMERIC_OPS or isinstance(n, bool) or not isinstance(n, (int, float)):
                raise InvalidPattern(f"{w}: numeric pair ({o!r}, {n!r})")
    elif op == "anything-but":
        if isinstance(v, list):
            if not v or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v):
                raise InvalidPattern(f"{w}: anything-but takes a non-empty array of strings or numbers")
        elif isinstance(v, dict):
            if len(v) != 1 or next(iter(v)) not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
                raise InvalidPattern(f"{w}: anything-but takes one of prefix, suffix, equals-ignore-case, wildcard")
            (iop, iv), = v.items()
            if iop == "wildcard":
                for x in iv if isinstance(iv, list) else [iv]:
                    _wildcard_ok(x, w)
            elif not (isinstance(iv, str) or (iop == "equals-ignore-case" and isinstance(iv, list) and all(isinstance(x, str) for x in iv))):
                raise InvalidPattern(f"{w}: anything-but {iop} takes a string")
        elif not (isinstance(v, (str, int, float)) and not isinstance(v, bool)):
            raise InvalidPattern(f"{w}: anything-but takes a string, a number, an array or an operator")


def matches(pattern: dict, event) -> bool:
    """AWS's matching of one event against a (valid) pattern: every field named matches (AND);
    an array of filters matches when any filter does (OR); an array in the event matches when
    any of its elements does; nested objects match field by field."""
    for k, v in pattern.items():
        if k == "$or":
            if not any(matches(p, event) for p in v):
                return False
            continue
        val = event.get(k, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(v, dict):
            if isinstance(val, list) and any(isinstance(x, dict) for x in val):
                if not any(matches(v, x) for x in val if isinstance(x, dict)):
                    return False
            elif not matches(v, val if isinstance(val, dict) else {}):
                return False
        elif not _leaf(v, val):
            return False
    return True


def _same(f, x) -> bool:
    if isinstance(f, bool) or isinstance(x, bool) or f is None or x is None:
        return type(f) is type(x) and f == x
    if isinstance(f, (int, float)) and isinstance(x, (int, float)):
        return float(f) == float(x)
    return type(f) is type(x) and f == x


def _wild(pattern: str, s) -> bool:
    if not isinstance(s, str):
        return False
    rx, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            rx += re.escape(pattern[i + 1])
            i += 2
            continue
        rx += ".*" if c == "*" else re.escape(c)
        i += 1
    return re.fullmatch(rx, s, flags=re.DOTALL) is not None


def _str_op(op, arg, s) -> bool:
    if not isinstance(s, str):
        return False
    if isinstance(arg, dict):  # {"equals-ignore-case": x}
        arg, s = arg["equals-ignore-case"].lower(), s.lower()
    return s.startswith(arg) if op == "prefix" else s.endswith(arg)


def _one(op, arg, x) -> bool:
    """One operator against one (non-missing, leaf) value."""
    if op in ("prefix", "suffix"):
        return _str_op(op, arg, x)
    if op == "equals-ignore-case":
        return isinstance(x, str) and x.lower() == arg.lower()
    if op == "wildcard":
        return _wild(arg, x)
    if op == "cidr":
        try:
            return isinstance(x, str) and ipaddress.ip_address(x) in ipaddress.ip_network(arg)
        except ValueError:
            return False
    if op == "numeric":
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        cmp = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, "=": lambda a, b: a == b,
               ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}
        return all(cmp[o](x, n) for o, n in zip(arg[::2], arg[1::2]))
    if op == "anything-but":
        if isinstance(arg, list):
            return not any(_same(a, x) for a in arg)
        if isinstance(arg, dict):
            (iop, iv), = arg.items()
            ivs = iv if isinstance(iv, list) else [iv]
            if not isinstance(x, str):
                return False
            return not any(_one(iop, a, x) for a in ivs)
        return not _same(arg, x)
    raise InvalidPattern(f"operator {op}")


def _leaf(filters: list, val) -> bool:
    if isinstance(val, dict):  # an object is not a leaf: only "exists": false can hold
        values, present = [], False
    elif isinstance(val, list):
        values = [x for x in val if not isinstance(x, (dict, list))]
        present = bool(values)
    elif val is _MISSING:
        values, present = [], False
    else:
        values, present = [val], True
    for f in filters:
        if isinstance(f, dict):
            (op, arg), = f.items()
            if op == "exists":
                if present == arg:
                    return True
            elif any(_one(op, arg, x) for x in values):
                return True
        elif any(_same(f, x) for x in values):
            return True
    return False


# ------------------------------------------------------------------ the local stack's environment


def read_env(d: str) -> dict:
    """The exports of DIR/env (what `scripts/local-stack start` and `seed` wrote)."""
    out = {}
    with open(os.path.join(d, "env"), encoding="utf-8") as f:
        for line in f:
            words = shlex.split(line, comments=True)
            if words[:1] == ["export"]:
                for w in words[1:]:
                    if "=" in w:
                        k, v = w.split("=", 1)
                        out[k] = v
    return out


def read_creds(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        words = shlex.split(f.read().replace("export ", " "))
    return dict(w.split("=", 1) for w in words if "=" in w)


def function_env(creds: dict) -> dict:
    """The environment a function runs in: this one without the set-up's credentials, with its
    role's (`creds`, from DIR/roles/<component>.env)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(creds)
    return env


def admin_client(d: str, service: str, env: dict | None = None):
    import boto3

    env = env or read_env(d)
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_REGION", REGION),
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def die(msg: str):
    print(f"event_pump: {msg}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ setup: the template's rules in moto


def function_components(template: dict) -> dict[str, str]:
    """Lambda logical id → component name, as template_iam.components names them (the function's
    description "spotfit NAME"); checked against it so DIR/roles/<component>.env is the role."""
    sys.path.insert(0, HERE)
    import template_iam

    roles = template_iam.components(template)
    out = {}
    for lid, r in template["Resources"].items():
        p = r.get("Properties", {})
        if r["Type"] == "AWS::Lambda::Function" and "Fn::GetAtt" in (p.get("Role") or {}):
            desc = p.get("Description", "")
            if desc.startswith("spotfit "):
                name = desc.split(" ", 1)[1]
                if roles.get(name) != p["Role"]["Fn::GetAtt"][0]:
                    die(f"function {lid} ({name}): template_iam names its role {roles.get(name)}, not {p['Role']['Fn::GetAtt'][0]}")
                out[lid] = name
    return out


def resolve_pattern(v, res: dict, bucket: str, where: str):
    """CloudFormation intrinsics in an event pattern: the data bucket and the state machine only."""
    if isinstance(v, list):
        return [resolve_pattern(x, res, bucket, where) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1 and next(iter(v)) in ("Ref", "Fn::GetAtt"):
        (k, a), = v.items()
        lid, attr = (a, "Ref") if k == "Ref" else (a if isinstance(a, list) else a.split(".", 1))
        t = res.get(lid, {}).get("Type")
        if t == "AWS::S3::Bucket" and attr in ("Ref",):
            return bucket
        if t == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{bucket}"
        if t == "AWS::StepFunctions::StateMachine" and attr in ("Ref", "Arn"):
            return STATE_MACHINE_ARN
        if t == "AWS::StepFunctions::StateMachine" and attr == "Name":
            return "spotfit"
        die(f"{where}: cannot resolve {json.dumps(v)} ({t or 'unknown resource'}): the emulator knows the data bucket and the state machine only")
    if any(k.startswith("Fn::") or k == "Ref" for k in v):
        die(f"{where}: intrinsic {json.dumps(v)} in an event pattern is not resolved by the emulator")
    return {k: resolve_pattern(x, res, bucket, where) for k, x in v.items()}


def _ref_of(x):
    if isinstance(x, dict):
        if "Ref" in x:
            return x["Ref"]
        if "Fn::GetAtt" in x:
            a = x["Fn::GetAtt"]
            return a[0] if isinstance(a, list) else a.split(".", 1)[0]
    return None


def s3_eventbridge_enabled(template: dict, bucket_lid: str) -> bool:
    for lid, r in template["Resources"].items():
        p = r.get("Properties", {})
        if lid == bucket_lid and (p.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            return True
        if r["Type"] == "Custom::S3BucketNotifications" and _ref_of(p.get("BucketName")) == bucket_lid \
                and "EventBridgeConfiguration" in (p.get("NotificationConfiguration") or {}):
            return True
    return False


def plan(template: dict, bucket: str) -> dict:
    """What `setup` creates: the rules with event patterns, their Lambda targets' components."""
    res = template["Resources"]
    comps = function_components(template)
    buckets = [lid for lid, r in res.items() if r["Type"] == "AWS::S3::Bucket" and lid.startswith("Data")]
    rules, skipped, schedules = [], [], []
    for lid, r in res.items():
        if r["Type"] != "AWS::Events::Rule":
            continue
        p = r.get("Properties", {})
        if "EventPattern" not in p:
            skipped.append({"rule": lid, "why": "schedule"})
            ts = []
            for t in p.get("Targets", []):
                fn = _ref_of(t.get("Arn"))
                if fn in comps:
                    ts.append({"component": comps[fn], **{k: t[k] for k in ("Input", "InputPath", "InputTransformer") if k in t}})
            schedules.append({"name": lid, "schedule": p.get("ScheduleExpression"),
                              "enabled": p.get("State", "ENABLED") == "ENABLED", "targets": ts})
            continue
        if p.get("State", "ENABLED") != "ENABLED":
            skipped.append({"rule": lid, "why": p.get("State")})
            continue
        if p.get("EventBusName") not in (None, "default"):
            die(f"rule {lid}: bus {p['EventBusName']}: the emulator has the default bus only")
        pattern = resolve_pattern(p["EventPattern"], res, bucket, f"rule {lid}")
        try:
            validate(pattern)
        except InvalidPattern as e:
            die(f"rule {lid}: EventBridge would refuse this pattern: {e}")
        targets = []
        for t in p.get("Targets", []):
            fn = _ref_of(t.get("Arn"))
            if res.get(fn, {}).get("Type") != "AWS::Lambda::Function" or fn not in comps:
                die(f"rule {lid}: target {json.dumps(t.get('Arn'))} is not one of spotfit's functions; the emulator delivers to those only")
            for k in ("Input", "InputPath", "InputTransformer"):
                if k in t:
                    die(f"rule {lid}: target {t.get('Id')} has {k}; the emulator delivers the event unchanged")
            allowed = any(
                x["Type"] == "AWS::Lambda::Permission" and _ref_of(x["Properties"].get("FunctionName")) == fn
                and x["Properties"].get("Principal") == "events.amazonaws.com"
                and _ref_of(x["Properties"].get("SourceArn")) == lid
                for x in res.values())
            if not allowed:
                die(f"rule {lid}: no AWS::Lambda::Permission lets events.amazonaws.com invoke {fn} from it; EventBridge could not deliver")
            targets.append(comps[fn])
        if not targets:
            die(f"rule {lid}: no targets")
        if (pattern.get("source") and any(s == "aws.s3" for s in pattern["source"] if isinstance(s, str))
                and not any(s3_eventbridge_enabled(template, b) for b in buckets)):
            die(f"rule {lid} matches S3 events, but the template does not turn on the bucket's EventBridge notifications "
                "(eventBridgeEnabled: true); S3 would send none")
        rules.append({"name": lid, "description": p.get("Description", ""), "pattern": pattern, "components": targets})
    deliveries = {}
    for lid, r in res.items():
        if r["Type"] == "AWS::Lambda::EventInvokeConfig":
            fn = _ref_of(r["Properties"].get("FunctionName"))
            if fn in comps:
                deliveries[comps[fn]] = 1 + int(r["Properties"].get("MaximumRetryAttempts", 2))
    timeouts = {comps[lid]: int(res[lid]["Properties"].get("Timeout", 3)) for lid in comps}
    used = sorted({c for r in rules for c in r["components"]})
    return {"rules": rules, "skipped": skipped, "schedules": schedules,
            "components": {c: {"queue": QUEUE_PREFIX + c, "deliveries": deliveries.get(c, DEFAULT_DELIVERIES),
                               "timeout_s": timeouts[c], "rules": [r["name"] for r in rules if c in r["components"]]} for c in used},
            "s3_eventbridge": any(s3_eventbridge_enabled(template, b) for b in buckets)}


def setup(d: str, template_path: str) -> None:
    with open(template_path, encoding="utf-8") as f:
        template = json.load(f)
    env = read_env(d)
    bucket = env["SPOTFIT_BUCKET"]
    p = plan(template, bucket)
    sqs, events, s3 = (admin_client(d, s, env) for s in ("sqs", "events", "s3"))
    rule_arn = lambda name: f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
    for comp, c in p["components"].items():
        # Long enough for the slowest invocation: a failed one is made visible again at once.
        url = sqs.create_queue(QueueName=c["queue"], Attributes={"VisibilityTimeout": str(c["timeout_s"] + 10)})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        # What EventBridge needs on AWS (moto's rules send without it).
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "EventBridgeRules", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": [rule_arn(r) for r in c["rules"]]}}}]}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        c.update(queue_url=url, queue_arn=arn)
    for r in p["rules"]:
        events.put_rule(Name=r["name"], EventPattern=json.dumps(r["pattern"]), State="ENABLED", Description=r["description"][:512])
        # "<aws.events.event.json>": the event itself; moto's default template would rewrite
        # placeholders inside the detail and drop "account" (see the module doc).
        events.put_targets(Rule=r["name"], Targets=[
            {"Id": comp, "Arn": p["components"][comp]["queue_arn"],
             "InputTransformer": {"InputPathsMap": {}, "InputTemplate": "<aws.events.event.json>"}}
            for comp in r["components"]])
        r["arn"] = rule_arn(r["name"])
    if p["s3_eventbridge"]:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    p["bucket"] = bucket
    p["state_machine_arn"] = STATE_MACHINE_ARN
    with open(os.path.join(d, "events.json"), "w", encoding="utf-8") as f:
        json.dump(p, f, indent=1)
    print(json.dumps({r["name"]: r["components"] for r in p["rules"]}))


# ------------------------------------------------------------------ tick: a schedule fires


def _json_path(event: dict, path: str):
    """The simple JSONPath of an InputPathsMap (`$`, `$.a.b`); None where it leads nowhere."""
    if path == "$":
        return event
    if not path.startswith("$."):
        die(f"input path {path!r}: only $ and $.a.b paths are played here")
    v = event
    for part in path[2:].split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def transform(event: dict, target: dict) -> str:
    """A target's input as EventBridge builds it from `event`: Input (fixed), InputPath, or an
    InputTransformer, whose <name> placeholders take the InputPathsMap values — as JSON where the
    placeholder stands bare in the template, as the string's text inside quotes."""
    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        return json.dumps(_json_path(event, target["InputPath"]))
    tr = target.get("InputTransformer")
    if not tr:
        return json.dumps(event)
    template = tr["InputTemplate"]
    values = {k: _json_path(event, v) for k, v in (tr.get("InputPathsMap") or {}).items()}
    values["aws.events.event.json"] = event
    out, i, in_string = [], 0, False
    while i < len(template):
        c = template[i]
        m = re.match(r"<([A-Za-z0-9_.-]+)>", template[i:]) if c == "<" else None
        if m and m.group(1) in values:
            v = values[m.group(1)]
            if in_string:  # inside a JSON string: the value's text, escaped for it
                out.append(json.dumps(v if isinstance(v, str) else json.dumps(v))[1:-1])
            else:
                out.append(json.dumps(v))
            i += m.end()
            continue
        if c == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        out.append(c)
        i += 1
    return "".join(out)


def tick(d: str, rule: str, time_s: str, deliveries: int) -> None:
    """Fires schedule RULE (a rule logical id, or its prefix) as EventBridge does at TIME:
    the "Scheduled Event" of that time, each target's input built from it, delivered DELIVERIES
    times in a row (EventBridge delivers at least once: a duplicate is the same event) to the
    target function on its role's credentials. Prints one JSON line per delivery
    ({component, delivery, rc, output}); exits 1 if any delivery failed."""
    with open(os.path.join(d, "events.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    found = [s for s in cfg.get("schedules", []) if s["name"] == rule or s["name"].startswith(rule)]
    if len(found) != 1:
        die(f"tick: {len(found)} schedule rules match {rule!r}: {[s['name'] for s in cfg.get('schedules', [])]}")
    sched = found[0]
    if not sched["enabled"]:
        die(f"tick: rule {sched['name']} is disabled; EventBridge would not fire it")
    invoke = shlex.split(os.environ.get("SPOTFIT_LOCAL_INVOKE") or die("SPOTFIT_LOCAL_INVOKE is not set"))
    when = _time(time_s).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
             "account": ACCOUNT, "time": when, "region": REGION,
             "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{sched['name']}"], "detail": {}}
    failed = False
    for t in sched["targets"]:
        comp = t["component"]
        env = function_env(read_creds(os.path.join(d, "roles", f"{comp}.env")))
        payload = transform(event, t).encode()
        for n in range(1, deliveries + 1):
            p = subprocess.run(invoke + [comp], input=payload, env=env, capture_output=True, timeout=120)
            failed |= p.returncode != 0
            print(json.dumps({"component": comp, "delivery": n, "rc": p.returncode,
                              "output": p.stdout.decode(errors="replace").strip()[:STDOUT_KEEP],
                              **({"stderr": p.stderr.decode(errors="replace")[-STDOUT_KEEP:]} if p.returncode else {})}), flush=True)
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ put


def _time(v):
    if v is None:
        return dt.datetime.now(dt.timezone.utc)
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc)
    return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))


def put_envelope(events, envelope: dict) -> str:
    for k in ("source", "detail-type", "detail"):
        if k not in envelope:
            raise ValueError(f"event without {k!r}: {json.dumps(envelope)[:300]}")
    entry = {"Source": envelope["source"], "DetailType": envelope["detail-type"], "Detail": json.dumps(envelope["detail"]),
             "Resources": list(envelope.get("resources", [])), "Time": _time(envelope.get("time"))}
    out = events.put_events(Entries=[entry])
    if out.get("FailedEntryCount"):
        raise RuntimeError(f"PutEvents refused the event: {out['Entries']}")
    return out["Entries"][0]["EventId"]


def put(d: str) -> None:
    envelope = json.load(sys.stdin)
    print(json.dumps({"EventId": put_envelope(admin_client(d, "events"), envelope)}))


def aws_event(source: str, detail_type: str, detail: dict, resources: list) -> dict:
    """AWS's envelope of a service event."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source, "account": ACCOUNT,
            "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": resources, "detail": detail}


def instance_arn(iid: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid}"


# ------------------------------------------------------------------ run


ENVELOPE_ORDER = ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]


def normalize(event: dict, message_id: str) -> dict:
    """The event as EventBridge delivers it (see the module doc for what moto changes)."""
    e = dict(event)
    e.pop("ingestion-time", None)
    e.setdefault("account", ACCOUNT)
    e.setdefault("region", REGION)
    e.setdefault("version", "0")
    if e.get("id") in (None, MOTO_S3_EVENT_ID):
        e["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"spotfit-local-events:{message_id}"))
    if isinstance(e.get("time"), (int, float)):
        e["time"] = dt.datetime.fromtimestamp(e["time"], dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**{k: e[k] for k in ENVELOPE_ORDER if k in e}, **{k: v for k, v in e.items() if k not in ENVELOPE_ORDER}}


class WarmPool:
    """Up to `size` warm `INVOKE --serve COMPONENT` processes per component, each answering one
    JSON line per event line, one event at a time (a Lambda execution environment)."""

    def __init__(self, invoke: list, size: int, env_of):
        self.invoke, self.size, self.env_of = invoke, size, env_of
        self.cv = threading.Condition()
        self.idle: dict[str, list] = {}
        self.count: dict[str, int] = {}
        self.stats: dict[str, dict] = {}

    def _acquire(self, comp: str):
        with self.cv:
            st = self.stats.setdefault(comp, {"started": 0, "deliveries": 0, "waited": 0, "killed": 0})
            waited = False
            while True:
                idle = self.idle.setdefault(comp, [])
                while idle:
                    p = idle.pop()
                    if p.poll() is None:
                        return p
                    self.count[comp] -= 1
                if self.count.get(comp, 0) < self.size:
                    self.count[comp] = self.count.get(comp, 0) + 1
                    break
                if not waited:
                    st["waited"] += 1
                    waited = True
                self.cv.wait()
        try:
            p = subprocess.Popen(self.invoke[:1] + ["--serve"] + self.invoke[1:] + [comp], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env_of(comp), bufsize=0)
        except OSError:
            with self.cv:
                self.count[comp] -= 1
                self.cv.notify()
            raise
        with self.cv:
            st["started"] += 1
        return p

    def _release(self, comp: str, p, ok: bool) -> None:
        with self.cv:
            if ok and p.poll() is None:
                self.idle[comp].append(p)
            else:
                if p.poll() is None:
                    p.kill()
                    self.stats[comp]["killed"] += 1
                self.count[comp] -= 1
            self.cv.notify()

    def call(self, comp: str, event: dict, timeout_s: float):
        """(rc, stdout bytes, stderr bytes) as the cold path reports them: rc 0 and the result,
        rc 1 and {errorType, errorMessage}, or "timeout" (the environment is discarded)."""
        import select

        p = self._acquire(comp)
        ok = False
        try:
            p.stdin.write((json.dumps(event) + "\n").encode())
            p.stdin.flush()
            deadline, buf = time.time() + timeout_s, b""
            while not buf.endswith(b"\n"):
                left = deadline - time.time()
                if left <= 0:
                    return "timeout", buf, b""
                r, _, _ = select.select([p.stdout], [], [], left)
                if r:
                    chunk = os.read(p.stdout.fileno(), 1 << 16)
                    if not chunk:
                        return f"exited {p.wait()}", buf, b"its execution environment ended"
                    buf += chunk
            with self.cv:
                self.stats[comp]["deliveries"] += 1
            ok = True
            ans = json.loads(buf)
            if isinstance(ans, dict) and "ok" in ans:
                return 0, json.dumps(ans["ok"]).encode(), b""
            return 1, buf.strip(), b""
        except (OSError, ValueError) as e:
            ok = False
            return "unstartable", b"", str(e).encode()
        finally:
            self._release(comp, p, ok)

    def close(self) -> None:
        with self.cv:
            for ps in self.idle.values():
                for p in ps:
                    if p.poll() is None:
                        p.kill()


class Pump:
    def __init__(self, d: str, warm: int = 0, live_only: bool = False):
        self.d = d
        self.env = read_env(d)
        path = os.path.join(d, "events.json")
        if not os.path.exists(path):
            die(f"{path} is missing: run `scripts/local-stack events {d} TEMPLATE` first")
        with open(path, encoding="utf-8") as f:
            self.cfg = json.load(f)
        invoke = os.environ.get("SPOTFIT_LOCAL_INVOKE")
        if not invoke:
            die("SPOTFIT_LOCAL_INVOKE is not set: the command that runs a function (COMPONENT, event on stdin)")
        self.invoke = shlex.split(invoke)
        self.creds = {}
        for comp in self.cfg["components"]:
            p = os.path.join(d, "roles", f"{comp}.env")
            if not os.path.exists(p):
                die(f"{p} is missing: `scripts/local-stack iam {d} TEMPLATE` writes each function's role credentials")
            self.creds[comp] = read_creds(p)
        self.patterns = {r["name"]: r["pattern"] for r in self.cfg["rules"]}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=int(os.environ.get("SPOTFIT_PUMP_WORKERS", "4")))
        self.live_only = live_only
        self.warm = WarmPool(self.invoke, warm, self.function_env) if warm > 0 else None

    def append(self, name: str, obj: dict) -> None:
        line = json.dumps(obj) + "\n"
        with self.lock, open(os.path.join(self.d, name), "a", encoding="utf-8") as f:
            f.write(line)

    def function_env(self, comp: str) -> dict:
        return function_env(self.creds[comp])

    # -- delivery
    def poll(self, comp: str) -> None:
        c = self.cfg["components"][comp]
        sqs = admin_client(self.d, "sqs", self.env)
        while not self.stop.is_set():
            try:
                msgs = sqs.receive_message(QueueUrl=c["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           AttributeNames=["ApproximateReceiveCount", "SentTimestamp"]).get("Messages", [])
            except Exception as e:  # the emulator going away at the end of a test
                if not self.stop.is_set():
                    print(f"receive {comp}: {e}", file=sys.stderr)
                    time.sleep(0.5)
                continue
            now = time.time()
            for m in msgs:
                self.pool.submit(self.deliver, sqs, comp, m, now)

    def deliver(self, sqs, comp: str, m: dict, received_at: float) -> None:
        c = self.cfg["components"][comp]
        attempt = int(m["Attributes"].get("ApproximateReceiveCount", "1"))
        event = normalize(json.loads(m["Body"]), m["MessageId"])
        base = {"event_id": event.get("id"), "component": comp, "source": event.get("source"),
                "detail_type": event.get("detail-type"), "event_time": event.get("time"),
                "queued_at": int(m["Attributes"].get("SentTimestamp", "0")) / 1000, "received_at": received_at,
                "attempt": attempt}
        if not any(matches(self.patterns[r], event) for r in c["rules"]):
            # moto routed an event that no rule of this function matches by AWS's rules.
            sqs.delete_message(QueueUrl=c["queue_url"], ReceiptHandle=m["ReceiptHandle"])
            self.append("events.log", {**base, "done_at": time.time(), "rc": None, "filtered": "no rule matches it by AWS's semantics"})
            return
        try:
            if self.warm:
                rc, out, err = self.warm.call(comp, event, c["timeout_s"])
            else:
                p = subprocess.run(self.invoke + [comp], input=json.dumps(event).encode(), env=self.function_env(comp),
                                   capture_output=True, timeout=c["timeout_s"])
                rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
        except OSError as e:
            rc, out, err = "unstartable", b"", str(e).encode()
        done = time.time()
        line = {**base, "done_at": done, "rc": rc, "stdout": out.decode(errors="replace")[:STDOUT_KEEP]}
        if rc != 0:
            line["stderr"] = err.decode(errors="replace")[-STDOUT_KEEP:]
        self.append("events.log", line)
        try:
            if rc == 0:
                sqs.delete_message(QueueUrl=c["queue_url"], ReceiptHandle=m["ReceiptHandle"])
            elif attempt >= c["deliveries"]:
                self.append("events-dead.jsonl", {"component": comp, "attempts": attempt, "rc": rc, "failed_at": done,
                                                  "stderr": line["stderr"][-500:], "event": event})
                sqs.delete_message(QueueUrl=c["queue_url"], ReceiptHandle=m["ReceiptHandle"])
            else:
                sqs.change_message_visibility(QueueUrl=c["queue_url"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=1)
        except Exception as e:
            print(f"settle {comp} {event.get('id')}: {e}", file=sys.stderr)

    # -- EC2's events
    def dropped(self) -> set:
        try:
            with open(os.path.join(self.d, "events-drop"), encoding="utf-8") as f:
                return {ln.strip() for ln in f if ln.strip()}
        except FileNotFoundError:
            return set()

    @staticmethod
    def transitions(prev, new) -> list:
        """The states EC2 reports on the way from prev to new (moto skips the transient ones)."""
        if prev == new:
            return []
        if new == "terminated" and prev != "shutting-down":
            return ["shutting-down", "terminated"]
        if new == "stopped" and prev != "stopping":
            return ["stopping", "stopped"]
        if new == "running" and prev is None:
            return ["pending", "running"]
        return [new]

    def emit_ec2(self) -> None:
        ec2, events = admin_client(self.d, "ec2", self.env), admin_client(self.d, "events", self.env)
        seen: dict[str, str] = {}
        while not self.stop.is_set():
            try:
                now = {}
                filters = [{"Name": "tag:spotfit:managed", "Values": ["true"]}]
                if self.live_only:
                    # The state filter only, the tag checked here: moto evaluates a tag filter
                    # against its whole tag store for every instance it ever had (quadratic).
                    filters = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]}]
                for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                    for r in page["Reservations"]:
                        for i in r["Instances"]:
                            if self.live_only and not any(t["Key"] == "spotfit:managed" and t["Value"] == "true" for t in i.get("Tags", [])):
                                continue
                            now[i["InstanceId"]] = i["State"]["Name"]
                if self.live_only:
                    # Out of the live listing: terminated (moto removes no instance otherwise).
                    for iid, st in list(seen.items()):
                        if iid not in now and st != "terminated":
                            now[iid] = "terminated"
                    for iid in [i for i, st in seen.items() if st == "terminated" and i not in now]:
                        del seen[iid]
                drop = self.dropped()
                for iid, state in now.items():
                    prev = seen.get(iid)
                    seen[iid] = state
                    if iid in drop:
                        continue
                    for s in self.transitions(prev, state):
                        ev = aws_event("aws.ec2", "EC2 Instance State-change Notification",
                                       {"instance-id": iid, "state": s}, [instance_arn(iid)])
                        eid = put_envelope(events, ev)
                        self.append("events-emitted.jsonl", {"at": time.time(), "instance_id": iid, "state": s, "event_id": eid})
            except Exception as e:
                if not self.stop.is_set():
                    print(f"ec2 emitter: {e}", file=sys.stderr)
            self.stop.wait(float(os.environ.get("SPOTFIT_PUMP_EC2_POLL_S", "0.25")))

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        threads = [threading.Thread(target=self.poll, args=(c,), daemon=True) for c in self.cfg["components"]]
        threads.append(threading.Thread(target=self.emit_ec2, daemon=True))
        for t in threads:
            t.start()
        with open(os.path.join(self.d, "pump.ready"), "w") as f:
            f.write(str(os.getpid()))
        while not self.stop.is_set():
            self.stop.wait(0.5)
        for t in threads:
            t.join(timeout=3)
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.warm:
            with open(os.path.join(self.d, "pump-warm.json"), "w", encoding="utf-8") as f:
                json.dump(self.warm.stats, f)
            self.warm.close()


# ------------------------------------------------------------------ selftest


def selftest() -> None:
    fixture = os.path.join(HERE, "..", "tests", "fixtures", "events-template.json")
    failures = []

    def case(name, ok):
        if not ok:
            failures.append(name)

    s3ev = lambda key, dtype="Object Created", bucket="b": {
        "source": "aws.s3", "detail-type": dtype, "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}
    exit_rule = {"source": ["aws.s3"], "detail-type": ["Object Created"],
                 "detail": {"bucket": {"name": ["b"]}, "object": {"key": [{"wildcard": "runs/*.exit"}]}}}
    case("wildcard: runs/ + .exit", matches(exit_rule, s3ev("runs/job=a/run=b/x.exit")))
    case("wildcard: not under runs/", not matches(exit_rule, s3ev("other/x.exit")))
    case("wildcard: .json", not matches(exit_rule, s3ev("runs/job=a/x.json")))
    case("wildcard: other bucket", not matches(exit_rule, s3ev("runs/x.exit", bucket="c")))
    case("wildcard: other detail-type", not matches(exit_rule, s3ev("runs/x.exit", "Object Tags Added")))
    case("wildcard: key missing", not matches(exit_rule, {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}))
    case("wildcard escape", _wild(r"a\*b", "a*b") and not _wild(r"a\*b", "axb"))
    case("suffix", matches({"k": [{"suffix": ".exit"}]}, {"k": "a.exit"}) and not matches({"k": [{"suffix": ".exit"}]}, {"k": "a.exits"}))
    case("prefix", matches({"k": [{"prefix": "runs/"}]}, {"k": "runs/x"}) and not matches({"k": [{"prefix": "runs/"}]}, {"k": "x/runs/"}))
    case("prefix ignore case", matches({"k": [{"prefix": {"equals-ignore-case": "RUNS/"}}]}, {"k": "runs/x"}))
    case("OR within an array", matches({"k": [{"prefix": "a"}, {"suffix": "z"}]}, {"k": "xz"}))
    case("prefix on a number", not matches({"k": [{"prefix": "1"}]}, {"k": 12}))
    state = {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
             "detail": {"state": ["shutting-down", "terminated", "stopping", "stopped"]}}
    ec2ev = lambda s: {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-1", "state": s}}
    case("state terminated", matches(state, ec2ev("terminated")))
    case("state running", not matches(state, ec2ev("running")))
    case("detail missing", not matches(state, {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}))
    case("source as array in event", matches({"resources": ["arn:x"]}, {"resources": ["arn:y", "arn:x"]}))
    sfn = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
           "detail": {"status": ["ABORTED", "FAILED", "TIMED_OUT"], "stateMachineArn": ["arn:sm"]}}
    sfnev = lambda st, sm="arn:sm": {"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": {"status": st, "stateMachineArn": sm}}
    case("sfn aborted", matches(sfn, sfnev("ABORTED")))
    case("sfn succeeded", not matches(sfn, sfnev("SUCCEEDED")))
    case("sfn other machine", not matches(sfn, sfnev("FAILED", "arn:other")))
    case("exists true", matches({"a": [{"exists": True}]}, {"a": 1}) and not matches({"a": [{"exists": True}]}, {}))
    case("exists false", matches({"a": [{"exists": False}]}, {}) and not matches({"a": [{"exists": False}]}, {"a": "x"}))
    case("exists on an object is not a leaf", not matches({"a": [{"exists": True}]}, {"a": {"b": 1}}))
    case("exists false nested missing", matches({"a": {"b": [{"exists": False}]}}, {}))
    case("anything-but", matches({"a": [{"anything-but": ["x", "y"]}]}, {"a": "z"}) and not matches({"a": [{"anything-but": ["x"]}]}, {"a": "x"}))
    case("anything-but missing", not matches({"a": [{"anything-but": "x"}]}, {}))
    case("anything-but prefix", not matches({"a": [{"anything-but": {"prefix": "ru"}}]}, {"a": "runs"}))
    case("numeric", matches({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5}) and not matches({"n": [{"numeric": [">", 0]}]}, {"n": "5"}))
    case("bool is not 1", not matches({"a": [1]}, {"a": True}) and matches({"a": [True]}, {"a": True}))
    case("null", matches({"a": [None]}, {"a": None}) and not matches({"a": [None]}, {}))
    case("$or", matches({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "2"}) and not matches({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "3"}))
    case("cidr", matches({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.7"}) and not matches({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.7"}))
    case("array of objects", matches({"a": {"b": ["x"]}}, {"a": [{"b": "y"}, {"b": "x"}]}))
    # What moto's PutRule accepts and AWS refuses.
    for name, bad in [("two operators", {"k": [{"prefix": "runs/", "suffix": ".exit"}]}), ("unknown operator", {"k": [{"sufix": ".exit"}]}),
                      ("double wildcard", {"k": [{"wildcard": "runs/**.exit"}]}), ("empty array", {"k": []}),
                      ("scalar value", {"k": "x"}), ("exists string", {"k": [{"exists": "yes"}]}), ("empty pattern", {}),
                      ("numeric odd", {"k": [{"numeric": [">"]}]}), ("nested array", {"k": [["x"]]})]:
        try:
            validate(bad)
            failures.append(f"validate accepts {name}")
        except InvalidPattern:
            pass
    # The fixture's patterns: valid, and moto's matcher agrees with AWS's on them (both ways).
    from moto.events.models import EventPattern

    with open(fixture, encoding="utf-8") as f:
        template = json.load(f)
    p = plan(template, "b")
    case("fixture: four rules, the schedule skipped", len(p["rules"]) == 4 and p["skipped"] == [{"rule": "ReaperSchedule02258773", "why": "schedule"}])
    case("fixture: the reaper's schedule kept for `tick`", [x["name"] for x in p["schedules"]] == ["ReaperSchedule02258773"])
    sched = {"time": "2026-12-03T02:00:00Z", "detail": {}}
    tr = {"InputTransformer": {"InputPathsMap": {"time": "$.time"}, "InputTemplate": '{"tick":<time>,"spec":{"name":"j"},"note":"at <time>"}'}}
    case("an input transformer: bare placeholder as JSON, quoted one as text",
         json.loads(transform(sched, tr)) == {"tick": "2026-12-03T02:00:00Z", "spec": {"name": "j"}, "note": "at 2026-12-03T02:00:00Z"})
    case("a fixed Input is delivered as it is", transform(sched, {"Input": '{"a":1}'}) == '{"a":1}')
    case("no input: the event itself", json.loads(transform(sched, {})) == sched)
    events = [s3ev(k, t) for k in ("runs/j/r.exit", "runs/j/r.json", "x/r.exit", "runs/r.exit.json") for t in ("Object Created", "Object Tags Added")]
    events += [ec2ev(s) for s in ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")]
    events += [{"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": "i-1", "instance-action": "terminate"}}]
    events += [sfnev(s, sm) for s in ("RUNNING", "SUCCEEDED", "ABORTED", "FAILED", "TIMED_OUT") for sm in (STATE_MACHINE_ARN, "arn:other")]
    agree = 0
    for r in p["rules"]:
        mp = EventPattern.load(json.dumps(r["pattern"]))
        for e in events:
            if mp.matches_event(copy.deepcopy(e)) != matches(r["pattern"], e):
                failures.append(f"moto and AWS semantics differ: rule {r['name']} on {json.dumps(e)}")
            else:
                agree += 1
    n_hits = sum(matches(r["pattern"], e) for r in p["rules"] for e in events)
    case("fixture patterns match some events", n_hits == 1 + 4 + 1 + 3)
    for f in failures:
        print("FAIL", f)
    print(f"selftest: {agree} rule×event pairs where moto's matcher agrees with AWS's semantics; {len(failures)} failures")
    sys.exit(1 if failures else 0)


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "setup" and len(sys.argv) == 4:
        setup(sys.argv[2], sys.argv[3])
    elif cmd == "run" and len(sys.argv) >= 3:
        rest = sys.argv[3:]
        warm = int(os.environ.get("SPOTFIT_PUMP_WARM", "0") or 0)
        live_only = os.environ.get("SPOTFIT_PUMP_LIVE_ONLY", "") not in ("", "0")
        while rest:
            a = rest.pop(0)
            if a == "--warm" and rest:
                warm = int(rest.pop(0))
            elif a == "--live-only":
                live_only = True
            else:
                print(__doc__, file=sys.stderr)
                sys.exit(2)
        Pump(sys.argv[2], warm=warm, live_only=live_only).run()
    elif cmd == "put" and len(sys.argv) == 3:
        put(sys.argv[2])
    elif cmd == "tick" and len(sys.argv) in (5, 7) and (len(sys.argv) == 5 or sys.argv[5] == "--deliveries"):
        tick(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[6]) if len(sys.argv) == 7 else 1)
    elif cmd == "selftest":
        selftest()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
