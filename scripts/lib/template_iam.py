#!/usr/bin/env python3
"""The IAM of the synthesized CDK template, enforced in the emulator.

Reads `cdk synth` output (Spotfit.template.json), finds the role of every Lambda function (by its
`Role` attribute) and of the job instances (the instance profile's role), collects exactly the
policies the template attaches to each (AWS::IAM::Policy documents and inline role policies), and
resolves the CloudFormation intrinsics in them (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select,
pseudo parameters) to the emulator's resource names and ARNs.

  template_iam.py roles TEMPLATE NAMES_JSON
      print {component: {"role": logical id, "statements": [...]}} with intrinsics resolved
  template_iam.py apply TEMPLATE NAMES_JSON OUT_DIR [--drop COMPONENT:ACTION]...
      create each role and its policies in moto (as the set-up's admin), assume it, and write
      OUT_DIR/<component>.env (export AWS_ACCESS_KEY_ID=… of that role's STS session) and
      OUT_DIR/roles.json; for each job role (components jobrole-NAME) an instance profile, and
      OUT_DIR/job-profiles.json {NAME: profile ARN}. --drop COMPONENT:SID removes that statement from one component's
      policies, --drop COMPONENT:ACTION that action (the negative control). Then turn moto's IAM enforcement on (POST /moto-api/reset-auth 0).
  template_iam.py static TEMPLATE
      the static check of what moto's evaluator skips (see below); exit 1 on a finding.

NAMES_JSON maps the template's resources to the emulator's:
  {"endpoint": "http://127.0.0.1:PORT", "account": "123456789012", "region": "us-east-1",
   "bucket": "...", "tables": {"Profiles": "...", "Runs": "...", "Capacity": "...", "Waits": "..."},
   "launch_template_id": "lt-..."}
(a table missing from "tables" is taken from its handlers' variable, e.g. $SPOTFIT_WAITS_TABLE).
Components are named by their function's description, "spotfit NAME" → NAME (size-job, …,
reap-instances, job-events), "instance" for the instance profile's role, and "jobrole-NAME" for
each job role of spotfit:jobRoles (its description says "spotfit job role NAME: …").

What moto 5.2's evaluator skips (moto/iam/access_control.py), and so what `apply` hands it:
* Resource ARNs: moto authorizes every non-S3 call (DynamoDB, EC2, KMS, SSM, …) against resource
  "*", so a statement naming a table or instance ARN would never match there. For those services
  the statements go to moto with Resource "*" (action-level enforcement only). S3 requests carry
  their bucket/key ARN in moto, so S3 statements keep their resolved resources and moto enforces
  them, prefix by prefix.
* Conditions: on identity policies moto has no request context values, so every condition is
  ignored (an Allow with a condition allows unconditionally; a Deny with one would deny always,
  so conditioned Denies are left out of moto).
`static` covers both: every conditioned statement and every non-S3 resource-scoped statement in
the template is checked here against the stack's intent (which action needs which condition key,
which resources an action may name).

Step Functions is not moto here at all: the local emulator (statemachine/tests/local-sfn.mjs)
takes SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat and StartExecution without asking IAM.
So `static` is their only enforcement: exactly check-job, job-events and reap-instances hold the
three SendTask* actions, each on this stack's state machine ARN and nothing else; no other role
has any states:* action but start-scheduled's states:StartExecution on the state machine (the
function the job schedules invoke, which names each execution by its tick).
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request

PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}
# Table logical-id prefix → the variable the handlers read its name from (the fallback of the
# names map's "tables").
TABLE_VARS = {"Profiles": "SPOTFIT_PROFILES_TABLE", "Runs": "SPOTFIT_RUNS_TABLE",
              "Capacity": "SPOTFIT_CAPACITY_TABLE", "Waits": "SPOTFIT_WAITS_TABLE"}


class Unresolved(Exception):
    pass


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------ intrinsics


class Resolver:
    """Ref/GetAtt of the template's resources → the emulator's names and ARNs."""

    def __init__(self, template: dict, names: dict):
        self.res = template["Resources"]
        self.names = names
        self.account = names.get("account", "123456789012")
        self.region = names.get("region", "us-east-1")

    def arn(self, service: str, rest: str, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account if account else ''}:{rest}"

    def table_name(self, lid: str) -> str:
        for prefix, name in self.names.get("tables", {}).items():
            if lid.startswith(prefix):
                return name
        for prefix, var in TABLE_VARS.items():
            if lid.startswith(prefix) and os.environ.get(var):
                return os.environ[var]
        raise Unresolved(f"table {lid}: not in the names map (tables: {sorted(self.names.get('tables', {}))}) nor in ${TABLE_VARS.get(re.sub(r'[0-9A-F]{8}$', '', lid), 'SPOTFIT_…_TABLE')}")

    def ref(self, lid: str) -> str:
        if lid.startswith("AWS::"):
            if lid == "AWS::AccountId":
                return self.account
            if lid == "AWS::Region":
                return self.region
            if lid in PSEUDO:
                return PSEUDO[lid]
            raise Unresolved(f"pseudo parameter {lid}")
        r = self.res.get(lid)
        if r is None:
            raise Unresolved(f"Ref to unknown resource {lid}")
        t = r["Type"]
        if t == "AWS::S3::Bucket":
            return self.bucket(lid)
        if t == "AWS::DynamoDB::Table":
            return self.table_name(lid)
        if t == "AWS::EC2::LaunchTemplate":
            return self.names.get("launch_template_id", f"lt-{lid.lower()[:17]}")
        if t in ("AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::Lambda::Function", "AWS::SQS::Queue"):
            return lid
        if t == "AWS::StepFunctions::StateMachine":
            return self.arn("states", f"stateMachine:{lid}")
        if t == "AWS::SNS::Topic":
            return self.arn("sns", lid)
        # Anything else is only ever named in non-S3 statements, which moto evaluates by action.
        return f"{lid}-emulated"

    def bucket(self, lid: str) -> str:
        if not lid.startswith("Data"):
            raise Unresolved(f"bucket {lid}: only the Data bucket is emulated")
        return self.names["bucket"]

    def getatt(self, lid: str, attr: str) -> str:
        r = self.res.get(lid)
        if r is None:
            raise Unresolved(f"GetAtt of unknown resource {lid}")
        t = r["Type"]
        if t == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{self.bucket(lid)}"
        if t == "AWS::DynamoDB::Table" and attr == "Arn":
            return self.arn("dynamodb", f"table/{self.table_name(lid)}")
        if t == "AWS::IAM::Role" and attr == "Arn":
            return self.arn("iam", f"role/{lid}", region=False)
        if t == "AWS::IAM::InstanceProfile" and attr == "Arn":
            return self.arn("iam", f"instance-profile/{lid}", region=False)
        if t == "AWS::KMS::Key" and attr == "Arn":
            return self.arn("kms", f"key/{lid}")
        if t == "AWS::Lambda::Function" and attr == "Arn":
            return self.arn("lambda", f"function:{lid}")
        if t == "AWS::SQS::Queue" and attr == "Arn":
            return self.arn("sqs", lid)
        if t == "AWS::EC2::SecurityGroup" and attr == "GroupId":
            return "sg-emulated"
        if t == "AWS::StepFunctions::StateMachine" and attr == "Arn":
            return self.arn("states", f"stateMachine:{lid}")
        if t == "AWS::Logs::LogGroup" and attr == "Arn":
            return self.arn("logs", f"log-group:{lid}:*")
        raise Unresolved(f"GetAtt {lid}.{attr} ({t})")

    def resolve(self, v):
        if isinstance(v, list):
            return [self.resolve(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return self.ref(a)
            if k == "Fn::GetAtt":
                lid, attr = a if isinstance(a, list) else a.split(".", 1)
                return self.getatt(lid, attr)
            if k == "Fn::Join":
                sep, parts = a
                return sep.join(str(self.resolve(p)) for p in parts)
            if k == "Fn::Select":
                i, lst = a
                return self.resolve(lst)[int(self.resolve(i))]
            if k == "Fn::Split":
                sep, s = a
                return str(self.resolve(s)).split(sep)
            if k == "Fn::Sub":
                tpl, extra = (a, {}) if isinstance(a, str) else (a[0], a[1])
                extra = {n: self.resolve(x) for n, x in extra.items()}

                def one(m):
                    name = m.group(1)
                    if name in extra:
                        return str(extra[name])
                    if "." in name and not name.startswith("AWS::"):
                        return self.getatt(*name.split(".", 1))
                    return str(self.ref(name))

                return re.sub(r"\$\{([^}!]+)\}", one, tpl)
            if k.startswith("Fn::"):
                raise Unresolved(f"intrinsic {k}")
        return {k: self.resolve(x) for k, x in v.items()}


# ------------------------------------------------------------------ roles and policies


def as_list(x):
    return [] if x is None else x if isinstance(x, list) else [x]


def components(template: dict) -> dict[str, str]:
    """component name → role logical id: each Lambda by its description "spotfit NAME", and
    "instance" for the instance profile's role."""
    out = {}
    for lid, r in template["Resources"].items():
        p = r.get("Properties", {})
        if r["Type"] == "AWS::Lambda::Function" and "Fn::GetAtt" in (p.get("Role") or {}):
            desc = p.get("Description", "")
            if not desc.startswith("spotfit "):
                continue  # CDK's own helper functions (log retention, …) are not ours
            out[desc.split(" ", 1)[1]] = p["Role"]["Fn::GetAtt"][0]
        if r["Type"] == "AWS::IAM::InstanceProfile":
            roles = [x["Ref"] for x in as_list(p.get("Roles"))]
            if len(roles) != 1:
                raise SystemExit(f"instance profile {lid}: expected one role, got {roles}")
            # A job role (spotfit:jobRoles) says so in its description: "spotfit job role NAME: …".
            desc = template["Resources"][roles[0]].get("Properties", {}).get("Description", "")
            if desc.startswith(JOB_ROLE_PREFIX):
                out["jobrole-" + desc[len(JOB_ROLE_PREFIX):].split(":", 1)[0]] = roles[0]
            else:
                out["instance"] = roles[0]
    return out


JOB_ROLE_PREFIX = "spotfit job role "


def profile_of(template: dict, role: str) -> str:
    """The logical id of the instance profile holding `role`."""
    for lid, r in template["Resources"].items():
        if r["Type"] == "AWS::IAM::InstanceProfile" and [x.get("Ref") for x in as_list(r["Properties"].get("Roles"))] == [role]:
            return lid
    raise SystemExit(f"no instance profile holds {role}")


def role_statements(template: dict, role: str) -> list[tuple[str, dict]]:
    """(holder logical id, statement) of every identity policy statement attached to `role`."""
    out = []
    for lid, r in template["Resources"].items():
        p = r.get("Properties", {})
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if role in [x.get("Ref") for x in as_list(p.get("Roles"))]:
                out += [(lid, s) for s in as_list(p["PolicyDocument"]["Statement"])]
        if r["Type"] == "AWS::IAM::Role" and lid == role:
            for pol in as_list(p.get("Policies")):
                out += [(lid, s) for s in as_list(pol["PolicyDocument"]["Statement"])]
    return out


def managed_arns(template: dict, role: str) -> list:
    return as_list(template["Resources"][role].get("Properties", {}).get("ManagedPolicyArns"))


def resolved_roles(template: dict, names: dict) -> dict:
    rv = Resolver(template, names)
    out = {}
    for comp, role in sorted(components(template).items()):
        sts = []
        for holder, s in role_statements(template, role):
            try:
                sts.append({"holder": holder, "statement": rv.resolve(s)})
            except Unresolved as e:
                raise SystemExit(f"{comp} (role {role}, policy {holder}): cannot resolve {e}")
        out[comp] = {
            "role": role,
            "trust": template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"],
            "managed": [json.dumps(m) for m in managed_arns(template, role)],
            "statements": sts,
        }
    return out


def for_moto(statement: dict) -> list[dict]:
    """The statement as moto can evaluate it (see the module doc): per service, S3 keeps its
    resources; the rest get Resource "*". Conditioned Denies are dropped (moto would apply them
    unconditionally)."""
    s = dict(statement)
    if s.get("Effect") == "Deny" and s.get("Condition"):
        return []
    actions = as_list(s.get("Action"))
    s3 = [a for a in actions if a.startswith("s3:")]
    other = [a for a in actions if not a.startswith("s3:")]
    out = []
    if s3:
        out.append({**s, "Action": s3})
    if other:
        out.append({**s, "Action": other, "Resource": "*"})
    for o in out:
        o.pop("Condition", None)
        o.pop("Sid", None)
    return out


def apply(template: dict, names: dict, out_dir: str, drops: list[str]) -> None:
    import boto3

    kw = dict(endpoint_url=names["endpoint"], region_name=names.get("region", "us-east-1"))
    iam = boto3.client("iam", **kw)
    sts = boto3.client("sts", **kw)
    roles = resolved_roles(template, names)
    dropped = set()
    os.makedirs(out_dir, exist_ok=True)
    creds = {}
    for comp, r in roles.items():
        role = r["role"]
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(r["trust"]), Description=f"spotfit {comp} (from the template)")
        statements = []
        for item in r["statements"]:
            s = dict(item["statement"])
            acts = as_list(s.get("Action"))
            for d in drops:
                dc, da = d.split(":", 1)
                if dc == comp and da == s.get("Sid"):
                    acts = []
                    dropped.add(d)
                elif dc == comp and da in acts:
                    acts = [a for a in acts if a != da]
                    dropped.add(d)
            if not acts:
                continue
            s["Action"] = acts
            statements += for_moto(s)
        if statements:
            iam.put_role_policy(RoleName=role, PolicyName="template", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{names.get('account', '123456789012')}:role/{role}", RoleSessionName=comp)["Credentials"]
        creds[comp] = {"role": role, "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["SessionToken"]}
        with open(os.path.join(out_dir, f"{comp}.env"), "w", encoding="utf-8") as f:
            f.write(f"export AWS_ACCESS_KEY_ID={c['AccessKeyId']} AWS_SECRET_ACCESS_KEY={c['SecretAccessKey']} AWS_SESSION_TOKEN={c['SessionToken']}\n")
    # Each job role's instance profile, in moto (the launcher passes its ARN; the stand-in maps
    # an instance's profile back to the role's credentials): the name → ARN allow-list is what
    # the stack gives the launcher as SPOTFIT_JOB_PROFILES.
    job_profiles = {}
    for comp, r in roles.items():
        if not comp.startswith("jobrole-"):
            continue
        prof = profile_of(template, r["role"])
        iam.create_instance_profile(InstanceProfileName=prof)
        iam.add_role_to_instance_profile(InstanceProfileName=prof, RoleName=r["role"])
        arn = iam.get_instance_profile(InstanceProfileName=prof)["InstanceProfile"]["Arn"]
        job_profiles[comp[len("jobrole-"):]] = arn
        creds[comp]["profile_arn"] = arn
    with open(os.path.join(out_dir, "job-profiles.json"), "w", encoding="utf-8") as f:
        json.dump(job_profiles, f)
    missing = set(drops) - dropped
    if missing:
        raise SystemExit(f"--drop matched no statement: {sorted(missing)}")
    with open(os.path.join(out_dir, "roles.json"), "w", encoding="utf-8") as f:
        json.dump(creds, f, indent=1)
    # From here on every request is authenticated and authorized.
    req = urllib.request.Request(names["endpoint"] + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req).read()
    print(json.dumps({c: v["role"] for c, v in creds.items()}))


# ------------------------------------------------------------------ static check

# Actions with no resource-level permissions in AWS: Resource "*" is the only form.
UNSCOPED = {
    "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
    "ec2:DescribeAvailabilityZones", "pricing:GetProducts",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    "ecr:GetAuthorizationToken",
}
# Action → the condition (operator, key) every Allow of it must carry. moto ignores them all.
REQUIRED_CONDITIONS = {
    "ec2:RunInstances": {("ArnEquals", "ec2:LaunchTemplate")},
    "ec2:CreateTags": {("StringEquals", "ec2:CreateAction")},
    "ec2:TerminateInstances": {("StringEquals", "ec2:ResourceTag/spotfit:managed")},
    "iam:PassRole": {("StringEquals", "iam:PassedToService")},
    "iam:CreateServiceLinkedRole": {("StringEquals", "iam:AWSServiceName")},
    "kms:Decrypt": {("StringEquals", "kms:ViaService")},
    "kms:Encrypt": {("StringEquals", "kms:ViaService")},
    "kms:GenerateDataKey": {("StringEquals", "kms:ViaService")},
    "kms:ReEncryptFrom": {("StringEquals", "kms:ViaService")},
    "kms:ReEncryptTo": {("StringEquals", "kms:ViaService")},
    "kms:DescribeKey": {("StringEquals", "kms:ViaService")},
}
# Condition keys allowed on top of the required ones, per action.
EXTRA_CONDITIONS = {
    "ec2:RunInstances": {("StringEquals", "aws:RequestTag/spotfit:managed"), ("StringEquals", "ec2:Owner")},
}
# Roles whose KMS grants are not through a service (the scheduler's export role decrypts to write
# the export; CDK's grantDecrypt gives it no ViaService condition).
KMS_WITHOUT_VIA = {"ProfilesExportRole"}
# Non-S3 resource-scoped ARNs must be of these services and of this stack's own resources.
ARN_OK = re.compile(r"^arn:aws:(dynamodb|ec2|ecr|iam|kms|lambda|ssm|secretsmanager|states|logs|sqs|sns|xray):")


# The components that answer the Await state's task tokens (docs/callback.md), and what they may call.
TASK_RESPONDERS = {"check-job", "job-events", "reap-instances"}
TASK_RESPONSE = {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
# The only function that may start executions: the job schedules' target (it names each by its tick).
STARTERS = {"start-scheduled"}


def states_findings(template: dict, rv: "Resolver") -> tuple[list[str], int]:
    """The Step Functions rule of `static` (see the module doc): (findings, statements checked)."""
    res = template["Resources"]
    machines = sorted(rv.ref(lid) for lid, r in res.items() if r["Type"] == "AWS::StepFunctions::StateMachine")
    comps = components(template)
    role_comp = {role: comp for comp, role in comps.items()}
    findings, checked = [], 0
    held: dict[str, set[str]] = {c: set() for c in TASK_RESPONDERS}
    roles = [lid for lid, r in res.items() if r["Type"] == "AWS::IAM::Role"]
    for role in roles:
        who = role_comp.get(role, role)
        for holder, s in role_statements(template, role):
            actions = [a for a in as_list(s.get("Action")) if a.lower().startswith("states:")]
            if not actions or s.get("Effect") != "Allow":
                continue
            checked += 1
            where = f"{holder} (role {role}{', ' + who if who != role else ''})"
            resources = [str(x) for x in as_list(rv.resolve(s.get("Resource")))]
            for a in actions:
                if a in TASK_RESPONSE:
                    if who not in TASK_RESPONDERS:
                        findings.append(f"{where}: {a}: only {sorted(TASK_RESPONDERS)} may answer task tokens")
                        continue
                    held[who].add(a)
                elif a == "states:StartExecution" and who in STARTERS:
                    pass
                else:
                    findings.append(f"{where}: {a}: no role has states:* but the task responders' SendTask* and {sorted(STARTERS)}'s StartExecution")
                    continue
                if s.get("Condition"):
                    findings.append(f"{where}: {a} carries a condition {sorted(s['Condition'])}")
                for r in resources:
                    if r not in machines:
                        findings.append(f"{where}: {a} on {r}, not this stack's state machine {machines}")
    for comp in sorted(TASK_RESPONDERS):
        if comp not in comps:
            findings.append(f"{comp}: no such function in the template (it answers task tokens)")
        elif held[comp] != TASK_RESPONSE:
            findings.append(f"{comp} (role {comps[comp]}): lacks {sorted(TASK_RESPONSE - held[comp])} on the state machine")
    return findings, checked


def static(template: dict) -> int:
    names = {"account": "123456789012", "region": "us-east-1", "bucket": "bucket",
             "tables": {"Profiles": "profiles", "Runs": "runs", "Capacity": "capacity", "Waits": "waits"}}
    rv = Resolver(template, names)
    findings, states_checked = states_findings(template, rv)
    checked = 0
    for lid, r in template["Resources"].items():
        p = r.get("Properties", {})
        if r["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        roles = [x.get("Ref") for x in as_list(p.get("Roles"))]
        for s in as_list(p["PolicyDocument"]["Statement"]):
            actions = as_list(s.get("Action"))
            cond = {(op, k) for op, kv in (s.get("Condition") or {}).items() for k in kv}
            resources = [str(x) for x in as_list(rv.resolve(s.get("Resource")))]
            moto_blind = bool(cond) or any(not a.startswith("s3:") for a in actions) and resources != ["*"]
            if not moto_blind:
                continue
            checked += 1
            where = f"{lid} (roles {roles}) {s.get('Sid', '')}".strip()
            for a in actions:
                if s.get("Effect") != "Allow":
                    continue
                need = REQUIRED_CONDITIONS.get(a, set())
                if a.startswith("kms:") and roles and all(any(r.startswith(k) for k in KMS_WITHOUT_VIA) for r in roles):
                    need = set()
                if not need <= cond:
                    findings.append(f"{where}: {a} lacks condition {sorted(need - cond)}")
                extra = cond - need - EXTRA_CONDITIONS.get(a, set())
                if extra and not a.startswith("kms:"):
                    findings.append(f"{where}: {a} has unexpected condition {sorted(extra)}")
                if resources == ["*"] and a not in UNSCOPED:
                    findings.append(f"{where}: {a} on Resource \"*\"")
            for res in resources:
                if res == "*":
                    continue
                if not ARN_OK.match(res) and not res.startswith("arn:aws:s3:::"):
                    findings.append(f"{where}: resource {res} is not an ARN of a known service")
                acct = res.split(":")[4] if res.count(":") >= 5 else ""
                if acct not in ("", names["account"], "*") or (acct == "*" and ":image/" not in res):
                    findings.append(f"{where}: resource {res} names account {acct!r}")
                if ":ssm:" in res and ":parameter/aws/service/" not in res and names["account"] not in res:
                    findings.append(f"{where}: SSM parameter {res} is outside this account and AWS's public ones")
    for f in findings:
        print("FINDING", f)
    print(f"static IAM check: {checked} statements moto cannot fully evaluate (conditions or non-S3 resource ARNs) checked, {states_checked} states:* statements checked, {len(findings)} findings")
    return 1 if findings else 0


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "roles":
        print(json.dumps(resolved_roles(load(sys.argv[2]), load(sys.argv[3])), indent=1))
    elif cmd == "apply":
        args = sys.argv[2:]
        drops = []
        while "--drop" in args:
            i = args.index("--drop")
            drops.append(args[i + 1])
            del args[i : i + 2]
        apply(load(args[0]), load(args[1]), args[2], drops)
    elif cmd == "static":
        sys.exit(static(load(sys.argv[2])))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
