# shellcheck shell=bash
# The local pipeline stack, up: moto with IAM enforced and the EC2 fault layer, the tables and
# bucket, the CDK template synthesized for the emulator's network and its roles and policies in
# moto, the template's EventBridge rules (S3 → EventBridge on), the local Step Functions service
# and the event pump. Sourced by the end-to-end test, the control-plane bench and the soak.
#
#   pipeline_stack_up DIR AGENT_BINARY   (target/debug/spotfit-agent: what user data fetches)
#
# Needs SPOTFIT_LOCAL_INVOKE; sets TEMPLATE, PY and SPOTFIT_ROLES_DIR, sources DIR/env (endpoints,
# admin credentials, table names, AWS_ENDPOINT_URL_SFN). Variables the handlers must see (e.g.
# SPOTFIT_BOOT_GRACE_S) are exported before the call: the services they run under inherit them;
# so are the pump's options (SPOTFIT_PUMP_*). SPOTFIT_SFN_ARGS: extra options of the local Step
# Functions service (the soak's `--warm N`). SPOTFIT_SYNTH_ARGS: extra `-c key=value` context for
# the synth (the container e2e's `spotfit:ecrRepositories`).
pipeline_stack_up() {
  local dir="$1" agent="$2"
  E2E_DIR="$dir"
  scripts/local-stack start "$dir" >/dev/null
  scripts/local-stack seed "$dir" >/dev/null
  # shellcheck disable=SC1091
  source "$dir/env"
  PY="$TOOLS/venv/bin/python"
  log "cdk synth for the emulator's network, then its IAM into moto (enforced from here on)"
  # shellcheck source=../../infra/test/env.sh
  source infra/test/env.sh
  infra_build
  # shellcheck disable=SC2086
  CDK_DEFAULT_ACCOUNT=123456789012 CDK_DEFAULT_REGION=us-east-1 \
    infra_synth "$dir/cdk.out" -c "spotfit:vpcId=$SPOTFIT_TEST_VPC" -c "spotfit:subnets=$SPOTFIT_SUBNETS" ${SPOTFIT_SYNTH_ARGS:-}
  TEMPLATE="$dir/cdk.out/Spotfit.template.json"
  "$PY" -c 'import boto3,os,sys; boto3.client("s3").upload_file(sys.argv[1], os.environ["SPOTFIT_BUCKET"], os.environ["SPOTFIT_AGENT_KEY"])' "$agent"
  scripts/local-stack iam "$dir" "$TEMPLATE"
  export SPOTFIT_ROLES_DIR="$dir/roles"
  # The job roles' allow-list (name → instance profile), as the stack gives it to the launcher.
  if [ -s "$SPOTFIT_ROLES_DIR/job-profiles.json" ] && [ "$(cat "$SPOTFIT_ROLES_DIR/job-profiles.json")" != "{}" ]; then
    SPOTFIT_JOB_PROFILES="$(cat "$SPOTFIT_ROLES_DIR/job-profiles.json")"
    export SPOTFIT_JOB_PROFILES
  fi
  log "the template's EventBridge rules into moto, the local Step Functions service, the event pump"
  scripts/local-stack events "$dir" "$TEMPLATE" >/dev/null
  # shellcheck disable=SC2086
  scripts/local-stack sfn "$dir" ${SPOTFIT_SFN_ARGS:-} >/dev/null
  # shellcheck disable=SC1091
  source "$dir/env"
  scripts/local-stack pump "$dir" >/dev/null
  e2e_verbs
}

# The end-to-end tests' two verbs, over the DIR given to pipeline_stack_up (E2E_DIR), defined
# by it at its end (after infra/test/env.sh, whose own `check` they replace):
#   check NAME ARGS…     runs "$PY" ARGS… (an assertion script, usually `-` with a heredoc);
#                        counts it in $passed / $failed, prints its output indented on success,
#                        whole on failure, with the IAM denials logged so far
#   execute INPUT NAME [OPTS…]
#                        runs the state machine on INPUT (run-execution.mjs), its result JSON
#                        in E2E_DIR/NAME.out, the first 400 bytes printed
e2e_verbs() {
  passed=0; failed=0
  check() {
    local name="$1"; shift
    if "$PY" "$@" >"$E2E_DIR/check.out" 2>&1; then passed=$((passed+1)); echo "ok   $name"; grep -v '^ok$' "$E2E_DIR/check.out" | sed 's/^/     /' || true; else
      failed=$((failed+1)); echo "FAIL $name"; cat "$E2E_DIR/check.out"
      if [ -s "${SPOTFIT_IAM_DENIALS:-/dev/null}" ]; then echo "IAM denials so far:"; sort "$SPOTFIT_IAM_DENIALS" | uniq -c; fi
    fi
  }
  execute() {
    local input="$1" name="$2"; shift 2
    node statemachine/tests/run-execution.mjs "$input" "$name" "$@" > "$E2E_DIR/$name.out"
    head -c 400 "$E2E_DIR/$name.out"; echo
  }
}
