"""Lints every IAM policy of the synthesized template with parliament (duo-labs), offline: each
action exists, each condition key applies to its action, each resource ARN has a format the
action accepts, and no statement is needlessly broad.

CloudFormation intrinsics are replaced by example values of the right ARN shape first.

Accepted finding, on purpose: RESOURCE_MISMATCH for ec2:RunInstances. RunInstances authorizes
each resource of the request (instance, subnet, security group, image, volume, …) separately, and
our statements are split by resource type so that each carries its own conditions (the spotfit
tag only on instance/*, ec2:Owner only on image/*). parliament looks at one statement at a time
and reports every resource type that statement does not name.

Accepted too: RESOURCE_MISMATCH for ssm:GetParameters on an AWS public parameter
(`arn:aws:ssm:REGION::parameter/aws/service/...`): AWS owns those, and their ARN has no account,
which parliament's pattern (`arn:*:ssm:*:*:parameter/*`) does not allow for.

Accepted too: RESOURCE_MISMATCH for states:SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat
on the state machine's ARN. The Service Authorization Reference lists no resource type for them
(parliament's data comes from it), but Step Functions authorizes a callback token against the
state machine of its execution (AccessDenied messages name `...:stateMachine:NAME`), which is what
CDK's grantTaskResponse grants; Resource "*" would let the three handlers answer any state
machine's tasks in the account. Only a statement whose every resource is a state machine ARN is
accepted.

usage: iam_lint.py TEMPLATE_JSON       prints findings, "N passed, M failed"
"""

from __future__ import annotations

import json
import sys

from parliament import analyze_policy_string

ACCOUNT, REGION = "123456789012", "us-east-1"
ATT = {
    "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/example",
    "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/example",
    "AWS::S3::Bucket": "arn:aws:s3:::example-bucket",
    "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:example",
    "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
    "AWS::IAM::InstanceProfile": f"arn:aws:iam::{ACCOUNT}:instance-profile/example",
    "AWS::EC2::SecurityGroup": "sg-0123456789abcdef0",
    "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:example",
    "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:example:*",
}
REF = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
REF_BY_TYPE = {
    "AWS::EC2::LaunchTemplate": "lt-0123456789abcdef0",
    "AWS::S3::Bucket": "example-bucket",
    "AWS::StepFunctions::StateMachine": ATT["AWS::StepFunctions::StateMachine"],
    "AWS::IAM::Role": "example",
}


def resolve(v, t):
    if isinstance(v, list):
        return [resolve(x, t) for x in v]
    if isinstance(v, dict):
        if "Fn::Join" in v:
            sep, parts = v["Fn::Join"]
            return sep.join(str(resolve(p, t)) for p in parts)
        if "Fn::GetAtt" in v:
            lid, attr = v["Fn::GetAtt"]
            typ = t["Resources"][lid]["Type"]
            if typ not in ATT:
                raise ValueError(f"no example value for {typ}.{attr}")
            return ATT[typ]
        if "Ref" in v:
            r = v["Ref"]
            if r in REF:
                return REF[r]
            return REF_BY_TYPE[t["Resources"][r]["Type"]]
        return {k: resolve(x, t) for k, x in v.items()}
    return v


def public_parameters_only(doc) -> bool:
    """Every resource of every ssm:GetParameters statement is an AWS public parameter."""
    stmts = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    res = []
    for s in stmts:
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if "ssm:GetParameters" in acts:
            res += s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
    return bool(res) and all(r.split(":")[4] == "" and ":parameter/aws/service/" in r for r in res)


TASK_RESPONSE = {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}


def state_machines_only(doc) -> bool:
    """Every resource of every SendTask* statement is a state machine ARN (no activity, no "*")."""
    stmts = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    res = []
    for s in stmts:
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if TASK_RESPONSE & set(acts):
            res += s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
    return bool(res) and all(r.startswith("arn:aws:states:") and r.split(":")[5] == "stateMachine" for r in res)


def accepted(finding, doc=None) -> bool:
    if finding.issue != "RESOURCE_MISMATCH":
        return False
    return all(
        d.get("action") == "ec2:RunInstances"
        or (d.get("action") == "ssm:GetParameters" and doc is not None and public_parameters_only(doc))
        or (d.get("action") in TASK_RESPONSE and doc is not None and state_machines_only(doc))
        for d in finding.detail
    )


def main() -> int:
    t = json.load(open(sys.argv[1]))
    passed = failed = 0
    for lid, r in sorted(t["Resources"].items()):
        p = r.get("Properties", {})
        docs = []
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(p["PolicyDocument"])
        elif r["Type"] == "AWS::IAM::Role":
            docs += [x["PolicyDocument"] for x in p.get("Policies", [])]
        for doc in docs:
            resolved = resolve(doc, t)
            policy = analyze_policy_string(json.dumps(resolved))
            bad = [f for f in policy.findings if not accepted(f, resolved)]
            for f in policy.findings:
                tag = "accepted" if accepted(f, resolved) else "FINDING"
                print(f"{tag} {lid}: {f.issue} {json.dumps(f.detail)[:300]}")
            if bad:
                failed += 1
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
