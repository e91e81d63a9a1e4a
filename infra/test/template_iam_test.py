"""Negative tests of scripts/lib/template_iam.py on the synthesized template: `static` passes the
real template and fails each broken variant (a missing condition, a task-token grant to the wrong
role or resource, a states:* action no role should have), naming the problem; `roles` (what
`apply` creates in moto) has the job-events component and maps the waits table.

The states:* rules matter most: the local Step Functions emulator is not moto, so no evaluator ever
sees SendTask* or StartExecution there, and this static check is their only enforcement.

usage: template_iam_test.py TEMPLATE_JSON     prints one line per case, "N passed, M failed"
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("template_iam", os.path.join(HERE, "..", "..", "scripts", "lib", "template_iam.py"))
ti = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ti)


def static(t: dict) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = ti.static(t)
    return rc, out.getvalue()


def lid(t: dict, prefix: str, typ: str) -> str:
    ids = [k for k, r in t["Resources"].items() if k.startswith(prefix) and r["Type"] == typ]
    assert len(ids) == 1, (prefix, typ, ids)
    return ids[0]


def default_policy(t: dict, comp: str) -> dict:
    role = ti.components(t)[comp]
    for k, r in t["Resources"].items():
        if r["Type"] == "AWS::IAM::Policy" and "DefaultPolicy" in k and {"Ref": role} in r["Properties"]["Roles"]:
            return r["Properties"]["PolicyDocument"]
    raise AssertionError(f"no default policy for {comp}")


def task_response(t: dict) -> dict:
    return t["Resources"][lid(t, "TaskResponse", "AWS::IAM::Policy")]["Properties"]


def sm_ref(t: dict) -> dict:
    return {"Ref": lid(t, "StateMachine", "AWS::StepFunctions::StateMachine")}


def add(t: dict, comp: str, stmt: dict) -> None:
    default_policy(t, comp)["Statement"].append(stmt)


# Each case: (name, mutation, text the findings must contain).
def cases():
    def terminate_without_tag(t):
        for s in default_policy(t, "reap-instances")["Statement"]:
            if s.get("Sid") == "TerminateManagedOnly":
                del s["Condition"]

    def task_token_to_launcher(t):
        add(t, "launch-instance", {"Effect": "Allow", "Action": "states:SendTaskSuccess", "Resource": sm_ref(t)})

    def task_token_on_star(t):
        task_response(t)["PolicyDocument"]["Statement"][0]["Resource"] = "*"

    def task_token_on_activity(t):
        task_response(t)["PolicyDocument"]["Statement"][0]["Resource"] = {
            "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":activity:other"]]
        }

    def job_events_cannot_answer(t):
        role = ti.components(t)["job-events"]
        task_response(t)["Roles"] = [r for r in task_response(t)["Roles"] if r != {"Ref": role}]

    def heartbeat_missing(t):
        st = task_response(t)["PolicyDocument"]["Statement"][0]
        st["Action"] = [a for a in st["Action"] if a != "states:SendTaskHeartbeat"]

    def check_job_stops_executions(t):
        add(t, "check-job", {"Effect": "Allow", "Action": "states:StopExecution", "Resource": sm_ref(t)})

    def reaper_starts_executions(t):
        add(t, "reap-instances", {"Effect": "Allow", "Action": ["states:StartExecution"], "Resource": sm_ref(t)})

    def starter_on_star(t):
        role = ti.components(t)["start-scheduled"]
        for k, r in t["Resources"].items():
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]:
                for s in ti.as_list(r["Properties"]["PolicyDocument"]["Statement"]):
                    s["Resource"] = "*"

    def states_wildcard_on_state_machine_role(t):
        role = lid(t, "StateMachineRole", "AWS::IAM::Role")
        for k, r in t["Resources"].items():
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]:
                r["Properties"]["PolicyDocument"]["Statement"].append({"Effect": "Allow", "Action": "states:*", "Resource": "*"})
                return
        raise AssertionError("no state machine role policy")

    def inline_role_policy(t):
        role = ti.components(t)["size-job"]
        t["Resources"][role]["Properties"]["Policies"] = [
            {"PolicyName": "x", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "states:SendTaskFailure", "Resource": sm_ref(t)}]}}
        ]

    return [
        ("TerminateInstances without its tag condition", terminate_without_tag, "ec2:TerminateInstances lacks condition"),
        ("SendTaskSuccess granted to launch-instance", task_token_to_launcher, "only ['check-job', 'job-events', 'reap-instances'] may answer task tokens"),
        ("SendTask* on Resource \"*\"", task_token_on_star, "on *, not this stack's state machine"),
        ("SendTask* on an activity ARN", task_token_on_activity, ":activity:other, not this stack's state machine"),
        ("job-events' role not in the task-response policy", job_events_cannot_answer, "job-events (role"),
        ("SendTaskHeartbeat missing (the sweep could not keep waits alive)", heartbeat_missing, "lacks ['states:SendTaskHeartbeat']"),
        ("check-job may StopExecution", check_job_stops_executions, "states:StopExecution: no role has states:*"),
        ("the reaper may StartExecution (only start-scheduled may)", reaper_starts_executions, "states:StartExecution: no role has states:*"),
        ("start-scheduled's StartExecution on \"*\"", starter_on_star, "states:StartExecution on *"),
        ("states:* on the state machine's own role", states_wildcard_on_state_machine_role, "states:*: no role has states:*"),
        ("SendTaskFailure in an inline role policy of size-job", inline_role_policy, "size-job): states:SendTaskFailure: only"),
    ]


def main() -> int:
    t = json.load(open(sys.argv[1]))
    passed = failed = 0

    def report(ok: bool, name: str, detail: str = "") -> None:
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))

    rc, out = static(t)
    report(rc == 0, "static passes the synthesized template", out)
    for name, mutate, want in cases():
        broken = copy.deepcopy(t)
        mutate(broken)
        rc, out = static(broken)
        report(rc == 1 and want in out, f"static fails: {name}", f"rc {rc}, wanted {want!r} in:\n{out}")

    names = {"account": "123456789012", "region": "us-east-1", "bucket": "b",
             "tables": {"Profiles": "p", "Runs": "r", "Capacity": "c", "Waits": "w"}}
    roles = ti.resolved_roles(t, names)
    want_comps = {"size-job", "launch-instance", "check-job", "terminate-instance", "record-run", "reap-instances", "job-events",
                  "start-scheduled", "refresh-prices", "instance"}
    report(set(roles) == want_comps, "apply's components: the nine functions (job-events among them) and the instance", str(sorted(roles)))
    ss = json.dumps(roles.get("start-scheduled", {}).get("statements", []))
    report("states:StartExecution" in ss and "dynamodb:" not in ss and "ec2:" not in ss,
           "start-scheduled's role: StartExecution, no tables, no EC2", ss[:400])
    je = json.dumps(roles.get("job-events", {}).get("statements", []))
    report("table/w" in je and "table/r" in je and "states:SendTaskSuccess" in je and "ec2:RunInstances" not in je,
           "job-events' role: the waits and runs tables mapped, SendTask*, no RunInstances", je[:400])
    cj = json.dumps(roles["check-job"]["statements"])
    report("arn:aws:dynamodb:us-east-1:123456789012:table/w" in cj, "check-job's waits statement names the mapped waits table", cj[:400])
    # Without "Waits" in the names map, the handlers' variable names it; without either, the error says which.
    no_waits = {**names, "tables": {k: v for k, v in names["tables"].items() if k != "Waits"}}
    old = os.environ.pop("SPOTFIT_WAITS_TABLE", None)
    try:
        os.environ["SPOTFIT_WAITS_TABLE"] = "from-env"
        report("table/from-env" in json.dumps(ti.resolved_roles(t, no_waits)["job-events"]), "the waits table from $SPOTFIT_WAITS_TABLE when the names map lacks it")
        del os.environ["SPOTFIT_WAITS_TABLE"]
        try:
            ti.resolved_roles(t, no_waits)
            report(False, "an unmapped waits table is an error naming SPOTFIT_WAITS_TABLE", "no error")
        except SystemExit as e:
            report("SPOTFIT_WAITS_TABLE" in str(e), "an unmapped waits table is an error naming SPOTFIT_WAITS_TABLE", str(e))
    finally:
        if old is not None:
            os.environ["SPOTFIT_WAITS_TABLE"] = old
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
