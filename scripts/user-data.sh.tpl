#!/bin/bash
# spotfit instance user data: fetch the agent, run the job under `spotfit-agent monitor`, power off.
#
# Rendered by spotfit-aws (src/user_data.rs). Only the @@NAME@@ placeholders below are
# substituted, each inside single quotes, and each value is either checked to be a plain token
# (bucket, key, region, job name, run id, a number) or base64 (the job's argv, env, secret
# references and image).
# The job's strings never reach a shell parser: argv and env travel as NUL-separated lists,
# decoded into files and read into arrays with `mapfile -d ''`.
set -euo pipefail

SPOTFIT_HOME="${SPOTFIT_HOME:-/var/lib/spotfit}"
IMDS="${SPOTFIT_IMDS_ENDPOINT:-http://169.254.169.254}"
BUCKET='@@BUCKET@@'
AGENT_KEY='@@AGENT_KEY@@'
REGION='@@REGION@@'
JOB_NAME='@@JOB@@'
RUN_ID='@@RUN_ID@@'
DEADLINE_EPOCH_S='@@DEADLINE_EPOCH_S@@'
ARGV_B64='@@ARGV_B64@@'
ENV_B64='@@ENV_B64@@'
# NAME=REFERENCE (ssm:…, secretsmanager:…), NUL-separated: the agent reads the values on this
# instance with its role and gives them to the job alone. No secret value is ever in here.
ENV_FROM_B64='@@ENV_FROM_B64@@'
IMAGE_B64='@@IMAGE_B64@@'
# Decided by the renderer: the sized memory (bytes, or empty), `all` when the type has GPUs and
# the job is an image, and the registry to log in to before the pull (host and token region).
MEMORY_LIMIT='@@MEMORY_LIMIT@@'
GPUS='@@GPUS@@'
REGISTRY_HOST='@@REGISTRY_HOST@@'
REGISTRY_REGION='@@REGISTRY_REGION@@'
# `yes` when the instance runs with one of the deployment's job roles (the spec's `role`): the
# role's rights are the job's, so its container may reach them through IMDS.
JOB_ROLE='@@JOB_ROLE@@'

log() { printf 'spotfit-user-data: %s\n' "$*" >&2; }

# Safety net: whatever happens to the pipeline, the instance powers off (and, launched with
# InstanceInitiatedShutdownBehavior=terminate, is terminated) at its deadline.
now_s=$(date +%s)
minutes=$(( (DEADLINE_EPOCH_S - now_s + 59) / 60 ))
if [ "$minutes" -lt 1 ]; then minutes=1; fi
shutdown -h "+$minutes" >/dev/null 2>&1 || log "could not schedule the deadline shutdown"

# IMDSv2 only (the launch sets HttpTokens=required): a session token, then the instance id.
imds_token=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  imds_token=$(curl -sf -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300') && break
  sleep 1
done
instance_id=$(curl -sf -H "X-aws-ec2-metadata-token: $imds_token" "$IMDS/latest/meta-data/instance-id" || echo unknown)
log "instance $instance_id, job $JOB_NAME, run $RUN_ID"

umask 077
mkdir -p "$SPOTFIT_HOME"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

# The agent binary, from the deployment's bucket (credentials: the instance profile via IMDSv2):
# the slim `spotfit-agent` (scripts/package-agent; monitor and S3 shipping only, linked for
# glibc 2.26, so it runs on Amazon Linux 2 and 2023 alike). It reads the same instance-role
# credentials itself, through IMDSv2.
for attempt in 1 2 3 4 5; do
  if aws s3 cp --only-show-errors "s3://$BUCKET/$AGENT_KEY" "$SPOTFIT_HOME/spotfit-agent"; then break; fi
  if [ "$attempt" -eq 5 ]; then log "cannot fetch the agent"; shutdown -h now; exit 1; fi
  sleep $((attempt * 2))
done
chmod 0755 "$SPOTFIT_HOME/spotfit-agent"

# The job, as data: NUL-separated argv and NAME=VALUE env, read without evaluation. The env
# file goes to the agent, which gives it to the job only (the agent and the container runtime
# never run with it); the image goes to the agent too, which parses it as an image reference
# and builds the container command line (its own network namespace, the image after `--`).
printf '%s' "$ARGV_B64" | base64 -d > "$SPOTFIT_HOME/argv"
printf '%s' "$ENV_B64" | base64 -d > "$SPOTFIT_HOME/env"
mapfile -d '' -t job_argv < "$SPOTFIT_HOME/argv"
printf '%s' "$ENV_FROM_B64" | base64 -d > "$SPOTFIT_HOME/env-from"
mapfile -d '' -t env_from < "$SPOTFIT_HOME/env-from"

agent_args=(--job "$JOB_NAME" --run-id "$RUN_ID" --upload "s3://$BUCKET"
  --summary "$SPOTFIT_HOME/summary.json" --job-env "$SPOTFIT_HOME/env" --disk /)

# Instance-store NVMe (types with a `d`, i-, and others): one disk, or all of them striped,
# formatted at every boot (its data does not survive a stop) and mounted as the job's scratch
# directory, where the container runtime keeps its images and layers too. Found by the names
# the NVMe driver gives them (EBS volumes are `Amazon Elastic Block Store`).
BY_ID="${SPOTFIT_DISK_BY_ID:-/dev/disk/by-id}"
SCRATCH="${SPOTFIT_SCRATCH_DIR:-/scratch}"
nvme=()
for link in "$BY_ID"/nvme-Amazon_EC2_NVMe_Instance_Storage_*; do
  case "$link" in *-part*) continue;; esac
  [ -e "$link" ] || continue
  dev=$(readlink -f "$link")
  case " ${nvme[*]-} " in *" $dev "*) ;; *) nvme+=("$dev");; esac
done
if [ "${#nvme[@]}" -gt 0 ]; then
  scratch_dev="${nvme[0]}"
  if [ "${#nvme[@]}" -gt 1 ]; then
    if command -v mdadm >/dev/null 2>&1 &&
        mdadm --create /dev/md/spotfit --run --force --level=0 --raid-devices="${#nvme[@]}" "${nvme[@]}" >/dev/null 2>&1; then
      scratch_dev=/dev/md/spotfit
    else
      log "no RAID (mdadm); scratch is the first of ${#nvme[@]} instance-store disks"
    fi
  fi
  if mkfs.xfs -f -q "$scratch_dev" && mkdir -p "$SCRATCH" && mount -o noatime "$scratch_dev" "$SCRATCH"; then
    chmod 1777 "$SCRATCH"
    agent_args+=("--scratch=$SCRATCH")
    log "scratch: ${#nvme[@]} instance-store disk(s) on $SCRATCH"
    if [ -n "$IMAGE_B64" ]; then
      # The runtime's images and layers on the fast local disk too: its storage directory
      # moved there (copied, then bind-mounted over the original) with the runtime stopped.
      for store in ${SPOTFIT_RUNTIME_STORES:-/var/lib/docker /var/lib/containers}; do
        [ -d "$store" ] || continue
        name=$(basename "$store")
        systemctl stop docker.socket docker >/dev/null 2>&1 || true
        mkdir -p "$SCRATCH/.runtime/$name"
        cp -a "$store/." "$SCRATCH/.runtime/$name/" && mount --bind "$SCRATCH/.runtime/$name" "$store" ||
          log "could not move $store to the scratch disk"
        systemctl start docker >/dev/null 2>&1 || true
      done
    fi
  else
    log "could not format and mount the instance store; the job runs without scratch"
  fi
fi
# Over its sized memory the job is OOM-killed and the run says so (the pipeline retries it with
# more), rather than the host swapping or its own OOM killer picking a victim.
if [ -n "$MEMORY_LIMIT" ]; then agent_args+=(--memory-limit "$MEMORY_LIMIT"); fi
for ref in ${env_from[@]+"${env_from[@]}"}; do agent_args+=("--env-from=$ref"); done
auth_dir="$SPOTFIT_HOME/registry-auth"
if [ -n "$IMAGE_B64" ]; then
  image=$(printf '%s' "$IMAGE_B64" | base64 -d)
  agent_args+=("--image=$image")
  if [ "$GPUS" = all ]; then agent_args+=(--gpus); fi
  if [ -n "$REGISTRY_HOST" ]; then
    # The token goes from the AWS CLI to the runtime through a pipe: never in argv, never
    # printed. The runtime keeps it in a private file of this boot only (removed after the job),
    # which the agent's runtime calls find through these variables (docker, podman).
    mkdir -p "$auth_dir"
    export DOCKER_CONFIG="$auth_dir" REGISTRY_AUTH_FILE="$auth_dir/auth.json"
    logged_in=0
    for attempt in 1 2 3; do
      if aws ecr get-login-password --region "$REGISTRY_REGION" \
          | docker login --username AWS --password-stdin "$REGISTRY_HOST" >/dev/null; then
        logged_in=1; break
      fi
      sleep $((attempt * 2))
    done
    if [ "$logged_in" = 0 ]; then log "registry login to $REGISTRY_HOST failed; the pull will be refused"; fi
  fi
  # Without a job role, containers must not reach the instance role's (the agent's)
  # credentials: drop what they send to IMDS (forwarded traffic only; the host's own requests
  # are not forwarded); the launch's hop limit of 1 refuses IMDSv2 tokens to them as well. With
  # a job role the role is the job's, and the launch allows the container's extra hop.
  if [ -z "$JOB_ROLE" ]; then
    if iptables -N DOCKER-USER 2>/dev/null || iptables -L DOCKER-USER -n >/dev/null 2>&1; then
      iptables -C FORWARD -j DOCKER-USER 2>/dev/null || iptables -I FORWARD -j DOCKER-USER || log "could not hook DOCKER-USER"
      iptables -I DOCKER-USER -d 169.254.169.254/32 -j DROP || log "could not block IMDS for containers"
    else
      log "no iptables: IMDS is kept from containers by the hop limit only"
    fi
  fi
fi

set +e
"$SPOTFIT_HOME/spotfit-agent" monitor "${agent_args[@]}" -- ${job_argv[@]+"${job_argv[@]}"}
rc=$?
set -e
log "job ended with status $rc"
rm -rf "$auth_dir"

# Done: power off at once (the pipeline terminates the instance too; this saves the poll gap).
shutdown -h now >/dev/null 2>&1 || true
exit 0
