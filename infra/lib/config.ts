// Deployment settings, read once from CDK context (cdk.json or `-c key=value`) and checked, so
// that a bad value fails synth with a message naming the key instead of failing a deploy.
import * as fs from 'fs';
import * as path from 'path';
import { Node } from 'constructs';

/** Where the Lambda code comes from. */
export type LambdaCodeSource = 'zips' | 'placeholder';

export interface SpotfitConfig {
  /** VPC the job instances run in (`spotfit:vpcId`). */
  readonly vpcId: string;
  /** AZ id (e.g. `use1-az4`) → subnet id (`spotfit:subnets`, a JSON object). */
  readonly subnets: Record<string, string>;
  /** TCP ports the instances may reach outbound (`spotfit:egressPorts`). */
  readonly egressPorts: number[];
  /** AMI of the launch template: an id or `resolve:ssm:` reference (`spotfit:imageId`). */
  readonly imageId: string;
  /** Architecture of that AMI (`spotfit:architecture`): size-job ranks only types that can boot it. */
  readonly architecture: string;
  /** Owners whose AMIs the launcher may start (`spotfit:amiOwners`). */
  readonly amiOwners: string[];
  readonly rootVolumeGiB: number;
  /** IMDSv2 hop limit: 1 keeps containers on the bridge network away from the instance role. */
  readonly imdsHopLimit: number;
  /**
   * ECR repositories container jobs pull from (`spotfit:ecrRepositories`: names in this account
   * and region, or repository ARNs): the instance role may read exactly these images.
   */
  readonly ecrRepositories: string[];
  /**
   * Registry hosts besides ECR's own that take an ECR token (`spotfit:ecrRegistries`), passed to
   * the launcher as SPOTFIT_ECR_REGISTRIES: instances log in to them before the pull.
   */
  readonly ecrRegistries: string[];
  /**
   * The job roles a spec may name (`spotfit:jobRoles`, a JSON object of name → grants): each
   * becomes a role and instance profile holding the agent's narrow policy and exactly these
   * grants, and only these may be passed to a job's instance.
   */
  readonly jobRoles: Record<string, JobRoleConfig>;
  /** S3 key of the agent binary (`spotfit:agentKey`). */
  readonly agentKey: string;
  /** Bucket lifecycle (`spotfit:lifecycle`), days. */
  readonly lifecycle: { infrequentAccessDays: number; glacierIrDays: number; expireDays: number; exportsExpireDays: number };
  readonly logRetentionDays: number;
  /** Reaper schedule, minutes (`spotfit:reaperEveryMinutes`). */
  readonly reaperEveryMinutes: number;
  /** Spot price refresh schedule, minutes (`spotfit:priceRefreshMinutes`, default 60). */
  readonly priceRefreshMinutes: number;
  /** Age after which size-job ignores the price overlay, hours (`spotfit:priceMaxAgeHours`, default 6). */
  readonly priceMaxAgeHours: number;
  /** Schedule of the DynamoDB profiles export to S3 (`spotfit:profilesExportSchedule`). */
  readonly profilesExportSchedule: string;
  readonly lambdaCode: LambdaCodeSource;
  /** Absolute path of the scheduled-jobs file. */
  readonly jobsFile: string;
  /** Absolute path of the ASL definition. */
  readonly stateMachineFile: string;
  /** Directory holding `<name>/bootstrap.zip` (cargo-lambda's output). */
  readonly lambdaZipDir: string;
  /** Optional e-mail subscribed to the alarm topic (`spotfit:alarmEmail`). */
  readonly alarmEmail?: string;
  /** `retain` (default) keeps bucket and tables when the stack is deleted. */
  readonly removal: 'retain' | 'destroy';
}

/** What one job role may do besides the agent's own writes. */
export interface JobRoleConfig {
  /**
   * Secrets its jobs may read into their environment (`env_from`): `ssm:NAME` or `ssm:/path/*`
   * (SSM parameters, GetParameter), `secretsmanager:NAME` or `secretsmanager:prefix*` or a
   * secret ARN (GetSecretValue). Secrets under AWS-managed keys need no KMS grant; a customer
   * key's decrypt goes in `managedPolicyArns`.
   */
  readonly secrets: string[];
  /** Objects its jobs may read, as `s3://bucket/prefix*` (s3:GetObject). */
  readonly s3Read: string[];
  /** Objects its jobs may write, as `s3://bucket/prefix*` (s3:PutObject). */
  readonly s3Write: string[];
  /** Managed policies attached as they are (the job's other rights). */
  readonly managedPolicyArns: string[];
}

// A spec's `role` (shared/core/src/spec.rs): IAM's role-name characters, here at most 40 so that
// the stack's prefix still fits IAM's 64.
const JOB_ROLE_NAME = /^[A-Za-z0-9_+=,.@-]{1,40}$/;
const SSM_SECRET = /^ssm:\/?[A-Za-z0-9_.\-\/]+\*?$/;
const SM_SECRET = /^secretsmanager:(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9\/_+=.@-]+\*?|[A-Za-z0-9\/_+=.@-]+\*?)$/;
const S3_PATTERN = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/[^\s]*$/;
const MANAGED_POLICY_ARN = /^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy\/[A-Za-z0-9+=,.@_\/-]+$/;

function jobRoles(node: Node): Record<string, JobRoleConfig> {
  const key = 'spotfit:jobRoles';
  const raw = parseMaybeJson(key, ctx(node, key));
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(key, 'must be a JSON object of role name → {"secrets": [...], "s3Read": [...], "s3Write": [...], "managedPolicyArns": [...]}');
  }
  const out: Record<string, JobRoleConfig> = {};
  const ids = new Map<string, string>();
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!JOB_ROLE_NAME.test(name)) throw new ConfigError(key, `${JSON.stringify(name)}: a role name is 1-40 of letters, digits and _+=,.@-`);
    const id = jobRoleId(name);
    const clash = ids.get(id);
    if (clash !== undefined) throw new ConfigError(key, `${JSON.stringify(name)} and ${JSON.stringify(clash)} differ only in punctuation`);
    ids.set(id, name);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${key}.${name}`, 'must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['secrets', 's3Read', 's3Write', 'managedPolicyArns'].includes(k)) throw new ConfigError(`${key}.${name}`, `unknown field ${k}`);
    }
    const strings = (field: string, re: RegExp, what: string): string[] => {
      const a = o[field] ?? [];
      if (!Array.isArray(a)) throw new ConfigError(`${key}.${name}.${field}`, 'must be a list');
      return a.map((x) => {
        if (typeof x !== 'string' || !re.test(x)) throw new ConfigError(`${key}.${name}.${field}`, `${JSON.stringify(x)} is not ${what}`);
        return x;
      });
    };
    out[name] = {
      secrets: strings('secrets', new RegExp(`${SSM_SECRET.source}|${SM_SECRET.source}`), 'ssm:NAME[*] or secretsmanager:NAME[*] (or a secret ARN)'),
      s3Read: strings('s3Read', S3_PATTERN, 's3://bucket/prefix'),
      s3Write: strings('s3Write', S3_PATTERN, 's3://bucket/prefix'),
      managedPolicyArns: strings('managedPolicyArns', MANAGED_POLICY_ARN, 'a managed policy ARN'),
    };
  }
  return out;
}

/** A job role's part of construct ids: its name's letters and digits. */
export function jobRoleId(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, '');
}

/** The repository root: infra/ lives one level below it (dist/lib when compiled). */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'infra', 'cdk.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the repository root above ${__dirname}`);
}

/**
 * The ASL file: `statemachine/spotfit.asl.json`, the one definition (its strings are held
 * against the Rust types by shared/core/tests/asl_contract.rs).
 */
export function defaultStateMachineFile(root: string): string {
  return path.join(root, 'statemachine', 'spotfit.asl.json');
}

class ConfigError extends Error {
  constructor(key: string, msg: string) {
    super(`context ${key}: ${msg}`);
  }
}

function ctx(node: Node, key: string): unknown {
  return node.tryGetContext(key);
}

/** Context values come as strings from `-c` and as JSON values from cdk.json. */
function parseMaybeJson(key: string, v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const t = v.trim();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new ConfigError(key, `not valid JSON: ${(e as Error).message}`);
    }
  }
  return v;
}

function str(node: Node, key: string, dflt?: string): string {
  const v = ctx(node, key);
  if (v === undefined || v === null || v === '') {
    if (dflt === undefined) throw new ConfigError(key, 'required (pass -c ' + key + '=...)');
    return dflt;
  }
  if (typeof v !== 'string') throw new ConfigError(key, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function int(node: Node, key: string, dflt: number, min: number, max: number): number {
  const raw = ctx(node, key);
  if (raw === undefined || raw === null || raw === '') return dflt;
  const n = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(key, `must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

function list(node: Node, key: string, dflt: string[]): string[] {
  const raw = parseMaybeJson(key, ctx(node, key));
  if (raw === undefined || raw === null || raw === '') return dflt;
  const arr = Array.isArray(raw) ? raw : String(raw).split(',');
  return arr.map((x) => String(x).trim()).filter((x) => x.length > 0);
}

const AZ_ID = /^[a-z]{2,4}[0-9]-az[0-9]+$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
// ECR's repository-name grammar, and its ARN (any partition).
const ECR_REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const ECR_REPOSITORY_ARN = /^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository\/[a-z0-9._\/-]+$/;
const REGISTRY_HOST = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?$/;

function optionalEmail(node: Node): string | undefined {
  const v = ctx(node, 'spotfit:alarmEmail');
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(v)) {
    throw new ConfigError('spotfit:alarmEmail', `not an e-mail address: ${JSON.stringify(v)}`);
  }
  return v;
}

const ARCHES = ['x86_64', 'arm64'];

/**
 * The stack's architecture, its AMI and the agent binary are one choice: a Graviton AMI with an
 * x86_64 agent (or ranking) fails every launch, so an inconsistent set is refused at synth.
 */
function checkArchitecture(cfg: SpotfitConfig): void {
  if (!ARCHES.includes(cfg.architecture)) {
    throw new ConfigError('spotfit:architecture', `must be one of ${ARCHES.join(', ')}, got ${cfg.architecture}`);
  }
  const named = (s: string) => ARCHES.find((a) => new RegExp(`(^|[^a-z0-9])${a}([^a-z0-9]|$)`).test(s));
  const image = cfg.imageId.startsWith('resolve:ssm:') ? named(cfg.imageId) : undefined;
  if (image && image !== cfg.architecture) {
    throw new ConfigError('spotfit:architecture', `is ${cfg.architecture} but spotfit:imageId ${cfg.imageId} is an ${image} image`);
  }
  const agent = named(cfg.agentKey);
  if (agent && agent !== cfg.architecture) {
    throw new ConfigError('spotfit:agentKey', `${cfg.agentKey} is an ${agent} agent but spotfit:architecture is ${cfg.architecture}`);
  }
}

export function loadConfig(node: Node): SpotfitConfig {
  const root = repoRoot();
  const vpcId = str(node, 'spotfit:vpcId');
  if (!VPC_ID.test(vpcId)) throw new ConfigError('spotfit:vpcId', `not a VPC id: ${vpcId}`);

  const rawSubnets = parseMaybeJson('spotfit:subnets', ctx(node, 'spotfit:subnets'));
  if (rawSubnets === undefined || rawSubnets === null || typeof rawSubnets !== 'object' || Array.isArray(rawSubnets)) {
    throw new ConfigError('spotfit:subnets', 'required: a JSON object of AZ id → subnet id, e.g. {"use1-az4":"subnet-0abc…"}');
  }
  const subnets: Record<string, string> = {};
  for (const [az, sn] of Object.entries(rawSubnets as Record<string, unknown>)) {
    if (!AZ_ID.test(az)) throw new ConfigError('spotfit:subnets', `key ${JSON.stringify(az)} is not an AZ id (like use1-az4)`);
    if (typeof sn !== 'string' || !SUBNET_ID.test(sn)) {
      throw new ConfigError('spotfit:subnets', `value for ${az} is not a subnet id: ${JSON.stringify(sn)}`);
    }
    subnets[az] = sn;
  }
  if (Object.keys(subnets).length === 0) throw new ConfigError('spotfit:subnets', 'needs at least one subnet');

  const egressPorts = list(node, 'spotfit:egressPorts', ['443']).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError('spotfit:egressPorts', `bad port ${p}`);
    return n;
  });

  const lambdaCode = str(node, 'spotfit:lambdaCode', 'zips');
  if (lambdaCode !== 'zips' && lambdaCode !== 'placeholder') {
    throw new ConfigError('spotfit:lambdaCode', `must be "zips" or "placeholder", got ${lambdaCode}`);
  }
  const removal = str(node, 'spotfit:removal', 'retain');
  if (removal !== 'retain' && removal !== 'destroy') throw new ConfigError('spotfit:removal', 'must be "retain" or "destroy"');

  const jobsFile = path.resolve(root, 'infra', str(node, 'spotfit:jobsFile', 'jobs.json'));
  const smCtx = ctx(node, 'spotfit:stateMachineFile');
  const stateMachineFile = smCtx ? path.resolve(root, String(smCtx)) : defaultStateMachineFile(root);
  if (!fs.existsSync(stateMachineFile)) throw new ConfigError('spotfit:stateMachineFile', `no such file ${stateMachineFile}`);

  const exportSchedule = str(node, 'spotfit:profilesExportSchedule', 'cron(30 3 * * ? *)');
  if (!/^(cron|rate)\(.+\)$/.test(exportSchedule)) {
    throw new ConfigError('spotfit:profilesExportSchedule', 'must be cron(...) or rate(...)');
  }

  const cfg: SpotfitConfig = {
    vpcId,
    subnets,
    egressPorts,
    imageId: str(node, 'spotfit:imageId', 'resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64'),
    architecture: str(node, 'spotfit:architecture', 'x86_64'),
    amiOwners: list(node, 'spotfit:amiOwners', ['amazon']),
    rootVolumeGiB: int(node, 'spotfit:rootVolumeGiB', 30, 8, 16384),
    imdsHopLimit: int(node, 'spotfit:imdsHopLimit', 1, 1, 64),
    ecrRepositories: list(node, 'spotfit:ecrRepositories', []),
    ecrRegistries: list(node, 'spotfit:ecrRegistries', []),
    jobRoles: jobRoles(node),
    agentKey: str(node, 'spotfit:agentKey', 'agent/x86_64/spotfit-agent'),
    lifecycle: {
      infrequentAccessDays: int(node, 'spotfit:infrequentAccessDays', 30, 30, 36500),
      glacierIrDays: int(node, 'spotfit:glacierIrDays', 90, 31, 36500),
      expireDays: int(node, 'spotfit:expireDays', 730, 1, 36500),
      exportsExpireDays: int(node, 'spotfit:exportsExpireDays', 7, 1, 36500),
    },
    logRetentionDays: int(node, 'spotfit:logRetentionDays', 30, 1, 3653),
    reaperEveryMinutes: int(node, 'spotfit:reaperEveryMinutes', 5, 1, 1440),
    priceRefreshMinutes: int(node, 'spotfit:priceRefreshMinutes', 60, 5, 1440),
    priceMaxAgeHours: int(node, 'spotfit:priceMaxAgeHours', 6, 1, 168),
    profilesExportSchedule: exportSchedule,
    lambdaCode,
    jobsFile,
    stateMachineFile,
    lambdaZipDir: path.resolve(root, str(node, 'spotfit:lambdaZipDir', 'target/lambda')),
    removal,
    alarmEmail: optionalEmail(node),
  };
  if (cfg.lifecycle.glacierIrDays <= cfg.lifecycle.infrequentAccessDays) {
    throw new ConfigError('spotfit:glacierIrDays', 'must be later than spotfit:infrequentAccessDays');
  }
  const retentions = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
  if (!retentions.includes(cfg.logRetentionDays)) {
    throw new ConfigError('spotfit:logRetentionDays', `must be one of CloudWatch's values: ${retentions.join(', ')}`);
  }
  if (cfg.lifecycle.expireDays <= cfg.lifecycle.glacierIrDays) {
    throw new ConfigError('spotfit:expireDays', 'must be later than spotfit:glacierIrDays');
  }
  if (cfg.agentKey.startsWith('/') || !cfg.agentKey.startsWith('agent/')) {
    throw new ConfigError('spotfit:agentKey', 'must be a key under agent/ (the only prefix instances may read)');
  }
  for (const r of cfg.ecrRepositories) {
    if (!ECR_REPOSITORY.test(r) && !ECR_REPOSITORY_ARN.test(r)) {
      throw new ConfigError('spotfit:ecrRepositories', `not a repository name or ARN: ${JSON.stringify(r)}`);
    }
  }
  for (const h of cfg.ecrRegistries) {
    if (!REGISTRY_HOST.test(h)) throw new ConfigError('spotfit:ecrRegistries', `not a registry host[:port]: ${JSON.stringify(h)}`);
  }
  checkArchitecture(cfg);
  return cfg;
}
