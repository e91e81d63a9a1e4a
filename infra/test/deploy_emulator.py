"""Deploys the synthesized spotfit stack to moto server's CloudFormation and checks what was built.

Does what `cdk bootstrap` + `cdk deploy` do, against the emulator: the bootstrap version
parameter and the assets bucket, the file assets published from the cloud assembly's
*.assets.json, then CreateStack from a TemplateURL (the template is over CloudFormation's
51,200-byte inline limit, as it would be in AWS). Then reads the resources back through the
service APIs, not through CloudFormation's own bookkeeping.

usage: deploy_emulator.py setup-network ENDPOINT      -> prints {"vpc": ..., "subnets": {...}}
       deploy_emulator.py deploy ENDPOINT CDK_OUT ASL_FILE JOBS_FILE
Prints one line per check and exits non-zero on the first failed deployment step; the checks
after a successful deploy are all run and counted.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import zipfile

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
QUALIFIER = "hnb659fds"  # the CDK's default bootstrap qualifier


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def setup_network(endpoint: str) -> None:
    ec2 = client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    azs = ec2.describe_availability_zones()["AvailabilityZones"][:2]
    subnets = {}
    for i, az in enumerate(azs):
        sn = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=az["ZoneName"])["Subnet"]
        subnets[az["ZoneId"]] = sn["SubnetId"]
    print(json.dumps({"vpc": vpc, "subnets": subnets}))


def sub(s: str) -> str:
    return s.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION).replace("${AWS::Partition}", "aws")


def zip_dir(path: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(path):
            for f in sorted(files):
                full = os.path.join(root, f)
                info = zipfile.ZipInfo(os.path.relpath(full, path))
                info.external_attr = (os.stat(full).st_mode & 0xFFFF) << 16
                with open(full, "rb") as fh:
                    z.writestr(info, fh.read())
    return buf.getvalue()


def publish_assets(endpoint: str, cdk_out: str, stack: str) -> tuple[str, str]:
    s3 = client(endpoint, "s3")
    ssm = client(endpoint, "ssm")
    ssm.put_parameter(Name=f"/cdk-bootstrap/{QUALIFIER}/version", Value="30", Type="String", Overwrite=True)
    bucket = f"cdk-{QUALIFIER}-assets-{ACCOUNT}-{REGION}"
    s3.create_bucket(Bucket=bucket)
    manifest = json.load(open(os.path.join(cdk_out, f"{stack}.assets.json")))
    template_key = None
    for asset in manifest.get("files", {}).values():
        src = os.path.join(cdk_out, asset["source"]["path"])
        body = zip_dir(src) if asset["source"].get("packaging") == "zip" else open(src, "rb").read()
        for dest in asset["destinations"].values():
            key = sub(dest["objectKey"])
            s3.put_object(Bucket=sub(dest["bucketName"]), Key=key, Body=body)
            if asset["source"]["path"].endswith(".template.json"):
                template_key = key
    if manifest.get("dockerImages"):
        raise SystemExit("docker image assets cannot be published here")
    if template_key is None:
        # Older manifests do not list the template: upload it ourselves.
        template_key = f"{stack}.template.json"
        s3.put_object(Bucket=bucket, Key=template_key, Body=open(os.path.join(cdk_out, f"{stack}.template.json"), "rb").read())
    return bucket, template_key


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn) -> None:
        try:
            detail = fn()
            self.passed += 1
            print(f"ok   {name}" + (f": {detail}" if detail else ""))
        except Exception as e:  # noqa: BLE001 - every failure is reported and counted
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def deploy(endpoint: str, cdk_out: str, asl_file: str, jobs_file: str) -> int:
    stack = "Spotfit"
    template = json.load(open(os.path.join(cdk_out, f"{stack}.template.json")))
    bucket, key = publish_assets(endpoint, cdk_out, stack)
    cfn = client(endpoint, "cloudformation")
    t0 = time.time()
    cfn.create_stack(
        StackName=stack,
        TemplateURL=f"https://{bucket}.s3.amazonaws.com/{key}",
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    status = "CREATE_IN_PROGRESS"
    while status.endswith("IN_PROGRESS") and time.time() - t0 < 120:
        st = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        status = st["StackStatus"]
        if status.endswith("IN_PROGRESS"):
            time.sleep(0.5)
    took = time.time() - t0
    print(f"stack status: {status} after {took:.1f}s")
    if status != "CREATE_COMPLETE":
        for ev in cfn.describe_stack_events(StackName=stack)["StackEvents"][:20]:
            print("  event:", ev.get("LogicalResourceId"), ev.get("ResourceStatus"), ev.get("ResourceStatusReason", ""))
        print("0 passed, 1 failed")
        return 1

    c = Checks()
    c.passed += 1
    print("ok   stack reaches CREATE_COMPLETE")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}
    resources = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    by_logical = {r["LogicalResourceId"]: r for r in resources}
    wanted = {k: v["Type"] for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
    missing = {k: t for k, t in wanted.items() if k not in by_logical}
    emulated = len(wanted) - len(missing)
    print(f"     resources emulated by moto: {emulated} of {len(wanted)}")
    print(f"     not emulated (moto has no CloudFormation model; skipped, not failed): "
          f"{', '.join(sorted(set(missing.values()))) or 'none'}")

    def phys(t: str) -> list[str]:
        return [by_logical[k]["PhysicalResourceId"] for k, v in wanted.items() if v == t and k in by_logical]

    s3 = client(endpoint, "s3")
    ddb = client(endpoint, "dynamodb")
    ec2 = client(endpoint, "ec2")
    lam = client(endpoint, "lambda")
    sfn = client(endpoint, "stepfunctions")
    events = client(endpoint, "events")
    iam = client(endpoint, "iam")

    # moto's CloudFormation models only part of some resources' properties (moto 5.2.5: an
    # S3::Bucket gets its encryption algorithm and tags, not the bucket key, versioning, public access block, lifecycle or
    # policy; a DynamoDB::Table not its PITR, SSE or TTL settings; a StateMachine not its
    # DefinitionSubstitutions). Those properties are asserted on the template by the node:test
    # suite (60-infra-synth-lint.sh); here they are listed, not counted.
    not_modelled = [
        "S3 versioning, bucket key, public access block, lifecycle rules, bucket policy (TLS-only)",
        "DynamoDB point-in-time recovery, KMS encryption, TTL on the capacity and waits tables",
        "S3 → EventBridge notifications on the bucket (NotificationConfiguration.EventBridgeConfiguration)",
        "Step Functions DefinitionSubstitutions (moto stores the definition unsubstituted)",
        "Glue database and tables, Athena workgroup and named queries, EventBridge Scheduler schedule",
    ]

    def bucket_ok():
        b = outputs["BucketName"]
        s3.head_bucket(Bucket=b)
        enc = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]
        expect(enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", f"encryption {enc}")
        return f"{b}: exists, default encryption AES256"

    def tables_ok():
        names = [outputs["ProfilesTable"], outputs["RunsTable"], outputs["CapacityTable"], outputs["WaitsTable"]]
        keys = {}
        for n in names:
            d = ddb.describe_table(TableName=n)["Table"]
            expect(d.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST", f"{n} billing")
            keys[n] = [(k["AttributeName"], k["KeyType"]) for k in d["KeySchema"]]
        expect(keys[outputs["ProfilesTable"]] == [("job", "HASH")], f"profiles keys {keys}")
        expect(keys[outputs["RunsTable"]] == [("run_id", "HASH"), ("attempt", "RANGE")], f"runs keys {keys}")
        expect(keys[outputs["CapacityTable"]] == [("pool", "HASH")], f"capacity keys {keys}")
        expect(keys[outputs["WaitsTable"]] == [("run_id", "HASH"), ("attempt", "RANGE")], f"waits keys {keys}")
        runs = ddb.describe_table(TableName=outputs["RunsTable"])["Table"]
        gsi = [(g["IndexName"], [k["AttributeName"] for k in g["KeySchema"]]) for g in runs.get("GlobalSecondaryIndexes", [])]
        expect(gsi == [("by-job", ["job", "started_at_ms"])], f"GSI {gsi}")
        # A conditional write works on the deployed table (what record-run relies on).
        ddb.put_item(TableName=outputs["ProfilesTable"], Item={"job": {"S": "probe"}, "version": {"N": "1"}},
                     ConditionExpression="attribute_not_exists(job)")
        try:
            ddb.put_item(TableName=outputs["ProfilesTable"], Item={"job": {"S": "probe"}, "version": {"N": "2"}},
                         ConditionExpression="attribute_not_exists(job)")
            raise AssertionError("second conditional put succeeded")
        except ddb.exceptions.ConditionalCheckFailedException:
            pass
        return "4 on-demand tables with the contract keys; runs GSI; conditional put works"

    def launch_template_ok():
        lt = outputs["LaunchTemplateId"]
        v = ec2.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        expect(v["MetadataOptions"]["HttpTokens"] == "required", f"IMDS {v.get('MetadataOptions')}")
        expect(all(b["Ebs"]["Encrypted"] for b in v["BlockDeviceMappings"]), "EBS encryption")
        expect(v.get("InstanceInitiatedShutdownBehavior") == "terminate", "shutdown behaviour")
        sgs = ec2.describe_security_groups(GroupIds=v["SecurityGroupIds"])["SecurityGroups"]
        expect(all(not g["IpPermissions"] for g in sgs), f"inbound rules {[g['IpPermissions'] for g in sgs]}")
        return f"{lt}: IMDSv2 required, EBS encrypted, SG without inbound rules"

    def functions_ok():
        arns = phys("AWS::Lambda::Function")
        expect(len(arns) == 9, f"{len(arns)} functions")
        # Each function has only its own variables (functions/<name>/src/lib.rs ENV); where one is
        # set, it must name the deployed resource.
        want = {"SPOTFIT_BUCKET": outputs["BucketName"], "SPOTFIT_LAUNCH_TEMPLATE_ID": outputs["LaunchTemplateId"],
                "SPOTFIT_RUNS_TABLE": outputs["RunsTable"], "SPOTFIT_PROFILES_TABLE": outputs["ProfilesTable"],
                "SPOTFIT_CAPACITY_TABLE": outputs["CapacityTable"], "SPOTFIT_WAITS_TABLE": outputs["WaitsTable"],
                "SPOTFIT_STATE_MACHINE_ARN": outputs["StateMachineArn"]}
        seen = set()
        for a in arns:
            cfg = lam.get_function_configuration(FunctionName=a)
            env = (cfg.get("Environment") or {}).get("Variables", {})
            for k, v in want.items():
                if k in env:
                    expect(env[k] == v, f"{a} {k} {env[k]} != {v}")
                    seen.add(k)
            if "SPOTFIT_SUBNETS" in env:
                expect(isinstance(json.loads(env["SPOTFIT_SUBNETS"]), dict), "subnets map")
            expect(cfg["Runtime"] == "provided.al2023", cfg["Runtime"])
        expect(seen == set(want), f"variables set by no function: {set(want) - seen}")
        return "9 functions, provided.al2023, each SPOTFIT_* it has resolved to the deployed resources"

    def state_machine_ok():
        arn = outputs["StateMachineArn"]
        d = sfn.describe_state_machine(stateMachineArn=arn)
        # moto keeps DefinitionString as given (it does not apply DefinitionSubstitutions), so the
        # deployed definition must be the ASL file byte for byte.
        expect(d["definition"] == open(asl_file).read(), "deployed definition differs from the file")
        expect(d["roleArn"].startswith("arn:aws:iam::"), f"role {d['roleArn']}")
        expect(d.get("type", "STANDARD") == "STANDARD", d.get("type"))
        return f"definition = {os.path.relpath(asl_file)}; role {d['roleArn'].split('/')[-1]}"

    def rules_ok():
        jobs = json.load(open(jobs_file))["jobs"]
        rules = events.list_rules()["Rules"]
        scheduled = [r for r in rules if r.get("ScheduleExpression")]
        patterns = [r for r in rules if r.get("EventPattern")]
        expect(len(scheduled) == len(jobs) + 2, f"{len(scheduled)} scheduled rules for {len(jobs)} jobs + reaper + price refresh")
        expect(len(patterns) == 4, f"{len(patterns)} event-pattern rules (2 EC2, exit markers, execution ends)")
        # Every pattern rule goes to job-events; the reaper (the sweep) keeps only its schedule.
        fns = {}
        for a in phys("AWS::Lambda::Function"):
            cfg = lam.get_function_configuration(FunctionName=a)
            fns[cfg["FunctionArn"]] = cfg.get("Description", "")
            fns[cfg["FunctionName"]] = cfg.get("Description", "")
        def target_of(rule):
            ts = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            expect(len(ts) == 1, f"{rule['Name']}: {len(ts)} targets")
            return fns.get(ts[0]["Arn"]) or fns.get(ts[0]["Arn"].split(":")[-1], ts[0]["Arn"])
        for r in patterns:
            expect(target_of(r) == "spotfit job-events", f"{r['Name']} → {target_of(r)}")
        pats = [json.loads(r["EventPattern"]) for r in patterns]
        exit_rule = [p for p in pats if p.get("source") == ["aws.s3"]]
        expect(len(exit_rule) == 1 and exit_rule[0]["detail"]["bucket"]["name"] == [outputs["BucketName"]]
               and exit_rule[0]["detail"]["object"]["key"] == [{"wildcard": "runs/*.exit"}], f"exit-marker rule {exit_rule}")
        ends = [p for p in pats if p.get("source") == ["aws.states"]]
        expect(len(ends) == 1 and ends[0]["detail"]["stateMachineArn"] == [outputs["StateMachineArn"]], f"execution-ends rule {ends}")
        others = [r for r in scheduled if not any(r["ScheduleExpression"] == j["schedule"] for j in jobs)]
        expect(sorted(target_of(r) for r in others) == ["spotfit reap-instances", "spotfit refresh-prices"],
               f"reaper and price-refresh schedules {others}")
        refresh = [r for r in others if target_of(r) == "spotfit refresh-prices"][0]
        expect(refresh["ScheduleExpression"] == "rate(1 hour)", f"price refresh {refresh['ScheduleExpression']}")
        for j in jobs:
            r = next(r for r in scheduled if r["ScheduleExpression"] == j["schedule"])
            t = events.list_targets_by_rule(Rule=r["Name"])["Targets"][0]
            tr = t.get("InputTransformer") or {}
            expect(tr.get("InputPathsMap") == {"time": "$.time"}, f"{j['name']} input paths {tr}")
            filled = json.loads(tr.get("InputTemplate", "null").replace("<time>", '"2026-12-03T02:00:00Z"'))
            expect(filled == {"tick": "2026-12-03T02:00:00Z", "spec": j["spec"]}, f"{j['name']} input {filled}")
            expect(target_of(r) == "spotfit start-scheduled", f"{j['name']} target {target_of(r)}")
        return (f"{len(jobs)} job rules → start-scheduled (input = tick + spec), reaper and hourly price-refresh schedules, "
                "4 event rules → job-events (EC2 x2, exit markers, execution ends)")

    def iam_ok():
        role = outputs["InstanceRoleArn"].split("/")[-1]
        iam.get_role(RoleName=role)
        profiles = iam.list_instance_profiles_for_role(RoleName=role)["InstanceProfiles"]
        expect(len(profiles) == 1, "instance profile")
        return f"instance role {role} in profile {profiles[0]['InstanceProfileName']}"

    c.check("S3 bucket", bucket_ok)
    c.check("DynamoDB tables", tables_ok)
    c.check("launch template and security group", launch_template_ok)
    c.check("Lambda functions", functions_ok)
    c.check("state machine definition", state_machine_ok)
    c.check("EventBridge rules", rules_ok)
    c.check("instance role and profile", iam_ok)

    def delete_ok():
        cfn.delete_stack(StackName=stack)
        for _ in range(240):
            try:
                s = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            except Exception:  # noqa: BLE001 - a deleted stack may no longer be described
                return "deleted"
            if s == "DELETE_COMPLETE":
                return "DELETE_COMPLETE"
            if s.endswith("FAILED"):
                raise AssertionError(s)
            time.sleep(0.5)
        raise AssertionError("delete did not finish")

    c.check("stack deletes cleanly", delete_ok)
    for item in not_modelled:
        print(f"n/a  not modelled by moto's CloudFormation (asserted on the template instead): {item}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "setup-network":
        setup_network(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "deploy":
        sys.exit(deploy(*sys.argv[2:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
