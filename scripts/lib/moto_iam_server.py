#!/usr/bin/env python3
"""moto server, with every IAM denial written to a log: "DENIED <action> <principal ARN> <resource>",
and, when SPOTFIT_REQUEST_LOG names a file, every authorized request counted there
("ALLOWED <action> <principal ARN>", one line each): the control-plane cost model counts the
DynamoDB and S3 requests each role made from it.

moto's AccessDenied answer does not always name the action (S3's is a bare "Access Denied", and on
DynamoDB's JSON protocol the body is XML, which the Rust SDK cannot parse into a code), so the tests
read this log to say which role was denied what. Only the logging is added; moto decides.

It also makes RunInstances do what EC2 does with `ImageId=resolve:ssm:NAME` (moto stores the
string as it is): the parameter is read with the caller's rights (`ssm:GetParameters` on the
parameter's ARN, checked by moto's IAM evaluator and logged like any denial; denied:
UnauthorizedOperation), a parameter that does not exist fails the launch (InvalidParameterValue),
and the instance gets the AMI id the parameter holds. moto ships AWS's public parameters
(/aws/service/ami-amazon-linux-latest/…, /aws/service/ecs/optimized-ami/…).

Usage: moto_iam_server.py HOST PORT DENIALS_LOG
"""

import os
import sys

from moto.iam import access_control


def main() -> None:
    host, port, denials = sys.argv[1], sys.argv[2], sys.argv[3]
    original = access_control.IAMRequestBase.check_action_permitted

    requests = os.environ.get("SPOTFIT_REQUEST_LOG")

    def logged(self, resource):  # type: ignore[no-untyped-def]
        try:
            out = original(self, resource)
            if requests:
                with open(requests, "a", encoding="utf-8") as f:
                    f.write(f"ALLOWED {self._action} {self._access_key.arn}\n")
            return out
        except Exception:
            with open(denials, "a", encoding="utf-8") as f:
                f.write(f"DENIED {self._action} {self._access_key.arn} {resource}\n")
            raise

    access_control.IAMRequestBase.check_action_permitted = logged
    original_sig = access_control.IAMRequestBase.check_signature

    def logged_sig(self):  # type: ignore[no-untyped-def]
        try:
            return original_sig(self)
        except Exception:
            # moto re-encodes a form body it has already parsed (Werkzeug consumed it) with
            # botocore's encoding (space as "+"); the Rust SDK percent-encodes per RFC 3986
            # (space as "%20"), so a request with a space in a value (a tag) fails moto's check
            # though AWS accepts it. Try the client's encoding before calling it a bad signature.
            if not self._body and isinstance(self._data, dict):
                from urllib.parse import quote, urlencode

                pairs = [(k, v) for k, vs in self._data.items() for v in (vs if isinstance(vs, list) else [vs])]
                self._body = urlencode(pairs, quote_via=quote, safe="-_.~")
                try:
                    return original_sig(self)
                except Exception:
                    self._body = b
            signed = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"])
            with open(denials, "a", encoding="utf-8") as f:
                f.write(f"BAD-SIGNATURE {self._action} {self._access_key.arn} signed={signed} body={len(self._body or b'')}B"
                        f" params={list(self._data)[:40]}\n")
            raise

    access_control.IAMRequestBase.check_signature = logged_sig
    resolve_ssm_image_ids(denials)
    from moto.server import main as moto_main

    moto_main(["-H", host, "-p", port])


def resolve_ssm_image_ids(denials: str) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.instances import InstanceResponse
    from moto.ssm.models import ssm_backends

    original_run = InstanceResponse.run_instances

    def run_instances(self):  # type: ignore[no-untyped-def]
        image_id = self._get_param("ImageId") or ""
        if image_id.startswith("resolve:ssm:"):
            name = image_id[len("resolve:ssm:"):]
            bare = name.split(":")[0]  # NAME[:VERSION]
            account = "" if bare.startswith("/aws/service/") else self.current_account
            arn = f"arn:aws:ssm:{self.region}:{account}:parameter{bare}"
            if ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT:
                req = access_control.IAMRequest(
                    account_id=self.current_account, method=self.method, path=self.raw_path,
                    data=self.data, body=self.raw_body, headers=self.headers, action="GetParameters",
                )
                req._action = "ssm:GetParameters"
                try:
                    req.check_action_permitted(arn)  # logged by `logged` above when denied
                except Exception:
                    raise EC2ClientError(
                        "UnauthorizedOperation",
                        f"You are not authorized to perform: ssm:GetParameters on resource: {arn}",
                    )
            param = ssm_backends[self.current_account][self.region].get_parameter(name)
            if param is None:
                raise EC2ClientError("InvalidParameterValue", f"Unable to resolve the SSM parameter {bare!r} for ImageId")
            # moto reads parameters from `params` (automated parsing) or `querystring`.
            if getattr(self, "automated_parameter_parsing", False):
                self.params["ImageId"] = param.value
            self.querystring["ImageId"] = [param.value]
        return original_run(self)

    InstanceResponse.run_instances = run_instances


if __name__ == "__main__":
    main()
