#!/usr/bin/env bash
# The slim agent as shipped: scripts/package-agent's build (zig-linked for glibc 2.26), then
#  1. the binary: highest GLIBC_x.y symbol version it requires <= 2.26, stripped, <= 8 MB,
#     `monitor --help` works; package-agent's upload lands it byte for byte in the emulator;
#  2. shipping to a real S3 emulator (moto on loopback, started and stopped here): samples,
#     summary and exit marker under the prefix, every sample parsing, each exactly once;
#  3. bad input: a bad --upload, a bad region, missing credentials each give an error naming
#     the field, before anything runs;
#  4. a frozen S3 (moto SIGSTOPped for 6 s mid-run, longer than the agent's 4 s request deadline):
#     retried, then every sample exactly once;
#  5. signatures checked: moto enforcing IAM (as the pipeline tests run it) with a user allowed only this bucket: the agent's SigV4 header signature is verified
#     and its puts allowed; the same run with a wrong secret is refused (SignatureDoesNotMatch),
#     retried, and left in the spool;
#  6. credentials from the instance role: no keys in the environment, an IMDSv2 stand-in on
#     loopback (token, role listing, role document) — the agent asks it with the token and ships;
#  7. HTTPS (rustls, as on AWS): moto serving TLS with a certificate from a CA made here — refused
#     (unknown issuer) with the bundled roots, shipped with AWS_CA_BUNDLE naming that CA; a
#     missing bundle file is an error naming AWS_CA_BUNDLE.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/tools.sh
source scripts/lib/monitor-test.sh
ensure_py "moto[server]==5.2.5" boto3
WORK="$(mktemp -d)"
MOTO_PID=""
IMDS_PID=""
cleanup() {
  [ -n "$MOTO_PID" ] && { kill -CONT "$MOTO_PID" 2>/dev/null; kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; } || true
  [ -n "$IMDS_PID" ] && { kill "$IMDS_PID" 2>/dev/null; wait "$IMDS_PID" 2>/dev/null; } || true
  rm -rf "$WORK"
}
trap cleanup EXIT

scripts/package-agent | tee "$WORK/package.log"
AGENT="$PWD/target/agent/x86_64/spotfit-agent"

# 1. The binary.
glibc=$(objdump -T "$AGENT" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
echo "highest GLIBC symbol version required: $glibc; needed libraries: $(readelf -d "$AGENT" | grep -o 'NEEDED.*' | grep -o '\[.*\]' | tr '\n' ' ')"
# Numeric comparison, component by component (2.3 < 2.26 < 2.27).
glibc_ok() { python3 -c 'import sys; v=[int(x) for x in sys.argv[1].split(".")]; sys.exit(0 if v <= [2, 26] else 1)' "$1"; }
check "highest required GLIBC version $glibc <= 2.26" "[ -n '$glibc' ] && glibc_ok '$glibc'"
size=$(stat -c %s "$AGENT")
check "binary is stripped (no .symtab)" "! readelf -S '$AGENT' | grep -q '\.symtab'"
check "binary size $size bytes <= 8 MB" "[ $size -le 8000000 ]"
check "spotfit-agent monitor --help lists --upload" "'$AGENT' monitor --help | grep -q -- '--upload'"

PORT="$(free_port)"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
start_moto_s3

# 1b. package-agent's upload (boto3, honouring AWS_ENDPOINT_URL): the object is the binary.
scripts/package-agent s3://bkt/agent/x86_64/spotfit-agent >/dev/null
check "package-agent s3://bkt/agent/x86_64/spotfit-agent uploads the binary byte for byte" \
  "'$TOOLS/venv/bin/python' -c 'import boto3, sys; b = boto3.client(\"s3\").get_object(Bucket=\"bkt\", Key=\"agent/x86_64/spotfit-agent\")[\"Body\"].read(); sys.exit(b != open(\"$AGENT\", \"rb\").read())'"
check "package-agent refuses a destination that is not s3://BUCKET/KEY" "! scripts/package-agent s3://bkt 2>/dev/null"

# 2. Shipping.
"$AGENT" monitor --upload s3://bkt/pfx --interval 0.2 --upload-every 1 --run-id ship1 --job agent-test \
  --imds off --no-gpu -- python3 -c 'import time; x = bytearray(20 << 20); time.sleep(3)' 2>"$WORK/ship.err"
check "run 1: samples, summary and marker in s3://bkt/pfx, every sample once" "verify_s3_run ship1 succeeded pfx"
check "run 1: the agent's table says everything was uploaded" "grep -q 'summary yes, exit marker yes' '$WORK/ship.err'"

# 3. Bad input, each refused with the field named and nothing run.
bad() { # bad NAME FIELD ENV... -- AGENT-ARGS...: exit 2, stderr names FIELD, the job never ran
  local name="$1" field="$2"; shift 2
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local rc=0
  env "${envs[@]}" "$AGENT" monitor "$@" --imds off --no-gpu -- touch "$WORK/ran-$name" 2>"$WORK/bad-$name.err" || rc=$?
  echo "  $name: exit $rc: $(head -c 300 "$WORK/bad-$name.err")"
  [ "$rc" = 2 ] && grep -q -- "$field" "$WORK/bad-$name.err" && [ ! -e "$WORK/ran-$name" ]
}
check "a bad --upload names the field" "bad url upload -- --upload s3:///nobucket"
check "an unknown --upload scheme names the field" "bad scheme upload -- --upload gs://bkt/x"
check "a bad region names AWS_REGION" "bad region AWS_REGION AWS_REGION='us-east-1/../x' -- --upload s3://bkt/pfx"
check "missing credentials name AWS_ACCESS_KEY_ID" "bad creds AWS_ACCESS_KEY_ID -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -- --upload s3://bkt/pfx"
check "half-set credentials name the missing one" "bad half AWS_SECRET_ACCESS_KEY -u AWS_SECRET_ACCESS_KEY -- --upload s3://bkt/pfx"
check "a bad endpoint names AWS_ENDPOINT_URL" "bad endpoint AWS_ENDPOINT_URL AWS_ENDPOINT_URL=ftp://x -- --upload s3://bkt/pfx"

# 4. Frozen S3: parts every 1 s, samples every 0.2 s, a 14 s job; moto stopped from 3 s to 9 s.
"$AGENT" monitor --upload s3://bkt/pfx --interval 0.2 --upload-every 1 --run-id frozen1 --job agent-test \
  --imds off --no-gpu -- sleep 14 2>"$WORK/frozen.err" &
mon=$!
sleep 3; kill -STOP "$MOTO_PID"; echo "emulator stopped at 3 s"
sleep 6; kill -CONT "$MOTO_PID"; echo "emulator back at 9 s"
rc=0; wait "$mon" || rc=$?
check "run 2 exits 0" "[ $rc = 0 ]"
check "run 2: uploads were retried during the outage" "grep -q 'will retry' '$WORK/frozen.err'"
check "run 2: every sample in S3 exactly once, summary and marker present" "verify_s3_run frozen1 succeeded pfx"

# 5. Signatures verified: moto set up (a user allowed only bkt), then told to enforce IAM on
#    every request from now on (its /moto-api/reset-auth, what INITIAL_NO_AUTH_ACTION_COUNT sets).
read -r UKEY USECRET < <(STS_FILE="$WORK/sts" "$TOOLS/venv/bin/python" - <<'PY'
import boto3, json, os, urllib.request
iam = boto3.client("iam")
iam.create_user(UserName="agent")
iam.put_user_policy(UserName="agent", PolicyName="bkt", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:ListBucket"],
                   "Resource": ["arn:aws:s3:::bkt", "arn:aws:s3:::bkt/*"]}]}))
k = iam.create_access_key(UserName="agent")["AccessKey"]
# A role too, assumed through STS: temporary credentials with a session token, what the
# instance role and the pipeline's stand-in instances give the agent.
iam.create_role(RoleName="agent-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="agent-role", PolicyName="bkt", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::bkt/sts/*"]}]}))
t = boto3.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/agent-role", RoleSessionName="agent")["Credentials"]
open(os.environ["STS_FILE"], "w").write(f'{t["AccessKeyId"]} {t["SecretAccessKey"]} {t["SessionToken"]}\n')
urllib.request.urlopen(urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
)
AWS_ACCESS_KEY_ID="$UKEY" AWS_SECRET_ACCESS_KEY="$USECRET" \
  "$AGENT" monitor --upload s3://bkt/iam --interval 0.2 --upload-every 1 --run-id iam1 --job agent-test \
  --imds off --no-gpu -- sleep 2 2>"$WORK/iam.err" || true
check "IAM enforced: the agent's signed puts are accepted" \
  "AWS_ACCESS_KEY_ID='$UKEY' AWS_SECRET_ACCESS_KEY='$USECRET' verify_s3_run iam1 succeeded iam"
check "IAM enforced: the anonymous test keys are refused (enforcement is on)" \
  "! '$TOOLS/venv/bin/python' -c 'import boto3; boto3.client(\"s3\").list_objects_v2(Bucket=\"bkt\")' 2>/dev/null"
rc=0
AWS_ACCESS_KEY_ID="$UKEY" AWS_SECRET_ACCESS_KEY="wrong-secret" \
  "$AGENT" monitor --upload s3://bkt/iam --interval 0.2 --upload-every 1 --run-id iam2 --job agent-test \
  --spool "$WORK/spool-iam2" --finish-timeout 2 --imds off --no-gpu -- sleep 2 2>"$WORK/iam2.err" || rc=$?
check "IAM enforced: a wrong secret is refused with S3's code and retried" \
  "grep -q 'SignatureDoesNotMatch' '$WORK/iam2.err' && grep -q 'will retry' '$WORK/iam2.err'"
check "IAM enforced: what was refused stays in the spool" "ls '$WORK/spool-iam2' | grep -q 'part-.*ndjson.gz$'"
read -r SKEY SSECRET STOKEN <"$WORK/sts"
AWS_ACCESS_KEY_ID="$SKEY" AWS_SECRET_ACCESS_KEY="$SSECRET" AWS_SESSION_TOKEN="$STOKEN" \
  "$AGENT" monitor --upload s3://bkt/sts --interval 0.2 --upload-every 1 --run-id sts1 --job agent-test \
  --finish-timeout 5 --imds off --no-gpu -- sleep 2 2>"$WORK/sts.err" || true
check "IAM enforced: a role's STS session (token signed and sent) may put under its prefix" \
  "grep -q 'summary yes, exit marker yes' '$WORK/sts.err'"
AWS_ACCESS_KEY_ID="$SKEY" AWS_SECRET_ACCESS_KEY="$SSECRET" AWS_SESSION_TOKEN="$STOKEN" \
  "$AGENT" monitor --upload s3://bkt/elsewhere --interval 0.2 --upload-every 1 --run-id sts2 --job agent-test \
  --finish-timeout 2 --imds off --no-gpu -- sleep 1 2>"$WORK/sts2.err" || true
check "IAM enforced: ... and nowhere else (AccessDenied, kept in the spool)" \
  "grep -q 'AccessDenied' '$WORK/sts2.err' && grep -q 'exit marker no' '$WORK/sts2.err'"

# Enforcement off again (the stand-in role's keys below exist in no IAM).
curl -sf -X POST -H 'Content-Type: text/plain' --data inf "$AWS_ENDPOINT_URL/moto-api/reset-auth" >/dev/null

# 6. The instance role through IMDSv2 (a stand-in that demands the token and logs what it served).
IMDS_PORT="$(free_port)"
"$TOOLS/venv/bin/python" - "$IMDS_PORT" "$WORK/imds.log" <<'PY' &
import datetime, json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
class H(BaseHTTPRequestHandler):
    def reply(self, code, body=b""):
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_PUT(self):
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        log.write(f"PUT {self.path}\n"); self.reply(200 if ok else 400, b"TOKEN-1" if ok else b"")
    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN-1":
            log.write(f"GET {self.path} without token\n"); return self.reply(401)
        log.write(f"GET {self.path} with token\n")
        if self.path == "/latest/meta-data/iam/security-credentials/":
            return self.reply(200, b"spotfit-instance-role")
        if self.path == "/latest/meta-data/iam/security-credentials/spotfit-instance-role":
            return self.reply(200, json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAROLE",
                "SecretAccessKey": "role-secret", "Token": "role-session-token", "Expiration": exp}).encode())
        self.reply(404)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
IMDS_PID=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$IMDS_PORT/" >/dev/null 2>&1 && break; sleep 0.1; done
: >"$WORK/imds.log" # only the agent's requests from here on
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_EC2_METADATA_DISABLED \
  "$AGENT" monitor --upload s3://bkt/role --interval 0.2 --upload-every 1 --run-id role1 --job agent-test \
  --imds "http://127.0.0.1:$IMDS_PORT" --no-gpu -- sleep 2 2>"$WORK/role.err" || true
echo "IMDS stand-in served: $(sort "$WORK/imds.log" | uniq -c | tr '\n' ';')"
check "instance role: IMDSv2 token asked for, role credentials read with it" \
  "grep -q 'PUT /latest/api/token' '$WORK/imds.log' && grep -q 'GET /latest/meta-data/iam/security-credentials/spotfit-instance-role with token' '$WORK/imds.log'"
check "instance role: never asked IMDS without the token" "! grep -q 'without token' '$WORK/imds.log'"
check "instance role: every sample in S3 exactly once" "verify_s3_run role1 succeeded role"

# 7. HTTPS with certificate verification.
kill "$MOTO_PID"; wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=""
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=spotfit-test-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$WORK/srv.key" -out "$WORK/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/srv.ext"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 1 \
  -extfile "$WORK/srv.ext" -out "$WORK/srv.pem" 2>/dev/null
TLS_PORT="$(free_port)"
"$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$TLS_PORT" -c "$WORK/srv.pem" -k "$WORK/srv.key" >"$WORK/moto-tls.log" 2>&1 &
MOTO_PID=$!
export AWS_ENDPOINT_URL="https://127.0.0.1:$TLS_PORT"
for _ in $(seq 50); do curl -s --cacert "$WORK/ca.pem" "$AWS_ENDPOINT_URL" >/dev/null 2>&1 && break; sleep 0.1; done
AWS_CA_BUNDLE="$WORK/ca.pem" "$TOOLS/venv/bin/python" -c 'import boto3; boto3.client("s3").create_bucket(Bucket="bkt")'
"$AGENT" monitor --upload s3://bkt/tls --interval 0.2 --upload-every 1 --run-id tls0 --job agent-test \
  --finish-timeout 2 --imds off --no-gpu -- sleep 1 2>"$WORK/tls0.err" || true
check "TLS: a certificate from an unknown CA is refused (bundled roots), nothing shipped" \
  "grep -qi 'UnknownIssuer\|certificate' '$WORK/tls0.err' && grep -q 'exit marker no' '$WORK/tls0.err'"
AWS_CA_BUNDLE="$WORK/ca.pem" "$AGENT" monitor --upload s3://bkt/tls --interval 0.2 --upload-every 1 --run-id tls1 \
  --job agent-test --imds off --no-gpu -- sleep 2 2>"$WORK/tls1.err" || true
check "TLS: with AWS_CA_BUNDLE naming the CA, every sample shipped over HTTPS exactly once" \
  "AWS_CA_BUNDLE='$WORK/ca.pem' verify_s3_run tls1 succeeded tls"
check "TLS: a missing AWS_CA_BUNDLE file names the variable" \
  "bad cabundle AWS_CA_BUNDLE AWS_CA_BUNDLE=$WORK/nonexistent.pem -- --upload s3://bkt/tls"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
