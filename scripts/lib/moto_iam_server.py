#!/usr/bin/env python3
"""moto server, with every IAM denial written to a log: "DENIED <action> <principal ARN> <resource>".

moto's AccessDenied answer does not always name the action (S3's is a bare "Access Denied", and on
DynamoDB's JSON protocol the body is XML, which the Rust SDK cannot parse into a code), so the tests
read this log to say which role was denied what. Only the logging is added; moto decides.

Usage: moto_iam_server.py HOST PORT DENIALS_LOG
"""

import sys

from moto.iam import access_control


def main() -> None:
    host, port, denials = sys.argv[1], sys.argv[2], sys.argv[3]
    original = access_control.IAMRequestBase.check_action_permitted

    def logged(self, resource):  # type: ignore[no-untyped-def]
        try:
            return original(self, resource)
        except Exception:
            with open(denials, "a", encoding="utf-8") as f:
                f.write(f"DENIED {self._action} {self._access_key.arn} {resource}\n")
            raise

    access_control.IAMRequestBase.check_action_permitted = logged
    from moto.server import main as moto_main

    moto_main(["-H", host, "-p", port])


if __name__ == "__main__":
    main()
