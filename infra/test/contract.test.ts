// The stack against its contracts: the ASL file, the jobs file, the Athena SQL files, the
// Lambda zips, and the context parameters (each bad value fails synth naming its key).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { namedQueries, RECORD_COLUMNS, RUN_COLUMNS, SAMPLE_COLUMNS } from '../lib/analytics';
import { defaultStateMachineFile, repoRoot } from '../lib/config';
import { loadJobs } from '../lib/jobs';
import { checkAsl, SUBSTITUTIONS } from '../lib/spotfit-stack';
import { asArray, render, resourcesOfType, synth } from './helpers';

const root = repoRoot();
const { stack, json } = synth();
const logicalId = (c: unknown) => stack.getLogicalId((c as { node: { defaultChild: never } }).node.defaultChild);

test('the state machine definition in the template is the ASL file, byte for byte', () => {
  const file = defaultStateMachineFile(root);
  const [[, sm]] = resourcesOfType(json, 'AWS::StepFunctions::StateMachine');
  assert.equal(sm.DefinitionString, fs.readFileSync(file, 'utf8'));
  // Every placeholder in the file is substituted, by the function of the same role.
  const used = new Set([...fs.readFileSync(file, 'utf8').matchAll(/\$\{([A-Za-z]+)\}/g)].map((m) => m[1]));
  const subs = sm.DefinitionSubstitutions as Record<string, unknown>;
  for (const key of used) {
    const fn = stack.functions[SUBSTITUTIONS[key]];
    assert.deepEqual(subs[key], { 'Fn::GetAtt': [logicalId(fn), 'Arn'] }, key);
  }
  assert.deepEqual(Object.keys(subs).sort(), Object.keys(SUBSTITUTIONS).sort());
  // The one definition: no second copy to drift.
  assert.equal(file, path.join(root, 'statemachine', 'spotfit.asl.json'));
  assert.ok(!fs.existsSync(path.join(root, 'infra', 'test', 'fixtures', 'spotfit.asl.json')), 'a stale ASL copy is back');
});

test('the ASL check rejects unknown placeholders and non-Lambda integrations', () => {
  assert.throws(() => checkAsl('{"States":{},"Comment":"${Nope}"}', 'x.json'), /unknown placeholder \$\{Nope\}/);
  const sdk = { StartAt: 'T', States: { T: { Type: 'Task', Resource: 'arn:aws:states:::aws-sdk:ec2:terminateInstances', End: true } } };
  assert.throws(() => checkAsl(JSON.stringify(sdk), 'x.json'), /lambda:invoke only/);
  assert.throws(() => checkAsl('{not json', 'x.json'), /not JSON/);
});

test('one enabled-or-not EventBridge rule per job in jobs.json, with the spec as input', () => {
  const jobs = loadJobs(path.join(root, 'infra', 'jobs.json'));
  assert.ok(jobs.length >= 1);
  const rules = resourcesOfType(json, 'AWS::Events::Rule');
  const smId = logicalId(stack.stateMachine);
  for (const job of jobs) {
    const r = rules.find(([, p]) => p.ScheduleExpression === job.schedule && JSON.stringify(p.Targets).includes(smId));
    assert.ok(r, job.name);
    const [target] = r[1].Targets as { Input: string; Arn: unknown }[];
    assert.deepEqual(JSON.parse(target.Input), job.spec);
    assert.equal(r[1].State, job.enabled ? 'ENABLED' : 'DISABLED');
  }
  const scheduled = rules.filter(([, p]) => JSON.stringify(p.Targets).includes(smId));
  assert.equal(scheduled.length, jobs.length);
});

test('reaper: on a schedule, and on spot warnings and instance state changes', () => {
  const reaperArn = { 'Fn::GetAtt': [logicalId(stack.functions['reap-instances']), 'Arn'] };
  const rules = resourcesOfType(json, 'AWS::Events::Rule').filter(([, p]) =>
    asArray(p.Targets as { Arn: unknown }[]).some((t) => JSON.stringify(t.Arn) === JSON.stringify(reaperArn)),
  );
  const kinds = rules.map(([, p]) => (p.ScheduleExpression as string) ?? (p.EventPattern as any)['detail-type'][0]).sort();
  assert.deepEqual(kinds, ['EC2 Instance State-change Notification', 'EC2 Spot Instance Interruption Warning', 'rate(5 minutes)']);
});

test('jobs file errors name the job and the field', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spotfit-jobs-'));
  const write = (doc: unknown) => {
    const f = path.join(dir, 'jobs.json');
    fs.writeFileSync(f, JSON.stringify(doc));
    return f;
  };
  const job = { name: 'etl', schedule: 'rate(1 hour)', spec: { name: 'etl', command: ['true'] } };
  assert.equal(loadJobs(write({ jobs: [job] })).length, 1);
  assert.throws(() => loadJobs(write({ jobs: [{ ...job, schedule: 'every hour' }] })), /jobs\[0\]\.schedule/);
  assert.throws(() => loadJobs(write({ jobs: [{ ...job, spec: { name: 'other', command: ['true'] } }] })), /jobs\[0\]\.spec\.name/);
  assert.throws(() => loadJobs(write({ jobs: [job, job] })), /jobs\[1\]\.name: duplicate/);
  assert.throws(() => loadJobs(write({ jobs: [{ ...job, cron: 'x' }] })), /jobs\[0\]\.cron: unknown field/);
  assert.throws(() => loadJobs(write({ jobs: [{ ...job, spec: { name: 'etl' } }] })), /spec\.command/);
});

test('bad context fails synth naming the key', () => {
  assert.throws(() => synth({ 'spotfit:vpcId': 'vpc-nope' }), /spotfit:vpcId/);
  assert.throws(() => synth({ 'spotfit:subnets': '{"us-east-1a":"subnet-0123456789abcdef0"}' }), /spotfit:subnets.*AZ id/);
  assert.throws(() => synth({ 'spotfit:subnets': '{}' }), /spotfit:subnets/);
  assert.throws(() => synth({ 'spotfit:egressPorts': '[0]' }), /spotfit:egressPorts/);
  assert.throws(() => synth({ 'spotfit:agentKey': 'samples/x' }), /spotfit:agentKey/);
  assert.throws(() => synth({ 'spotfit:logRetentionDays': 31 }), /spotfit:logRetentionDays/);
});

test('a real synth needs the cargo-lambda zips and says how to build them', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'spotfit-zips-'));
  assert.throws(
    () => synth({ 'spotfit:lambdaCode': 'zips', 'spotfit:lambdaZipDir': empty }),
    /size-job\/bootstrap\.zip: build the functions with scripts\/package-lambdas/,
  );
});

test('Athena: projected tables over the S3 layouts, a workgroup, and the named queries from infra/athena', () => {
  const tables = Object.fromEntries(
    resourcesOfType(json, 'AWS::Glue::Table').map(([, p]) => {
      const ti = p.TableInput as any;
      return [ti.Name, ti];
    }),
  );
  assert.deepEqual(Object.keys(tables).sort(), ['profiles_export', 'run_records', 'runs', 'samples']);
  const s = tables.samples;
  assert.equal(s.Parameters['projection.job.type'], 'injected');
  assert.equal(s.Parameters['projection.dt.type'], 'date');
  assert.match(render(s.Parameters['storage.location.template']), /\/samples\/job=\$\{job\}\/dt=\$\{dt\}\/$/);
  assert.deepEqual(s.PartitionKeys.map((k: any) => k.Name), ['job', 'dt']);
  assert.deepEqual(s.StorageDescriptor.Columns.map((c: any) => c.Name), SAMPLE_COLUMNS.map(([n]) => n));
  const r = tables.run_records;
  assert.deepEqual(r.PartitionKeys.map((k: any) => k.Name), ['dt']);
  assert.match(render(r.Parameters['storage.location.template']), /\/records\/dt=\$\{dt\}\/$/);
  assert.deepEqual(r.StorageDescriptor.Columns.map((c: any) => c.Name), RECORD_COLUMNS.map(([n]) => n));
  // A partition key may not repeat a data column (Hive rejects the table).
  for (const t of Object.values(tables) as any[]) {
    const cols = new Set(t.StorageDescriptor.Columns.map((c: any) => c.Name));
    for (const k of t.PartitionKeys) assert.ok(!cols.has(k.Name), `${t.Name}.${k.Name}`);
  }
  const [[, wg]] = resourcesOfType(json, 'AWS::Athena::WorkGroup');
  const wc = wg.WorkGroupConfiguration as any;
  assert.equal(wc.EnforceWorkGroupConfiguration, true);
  assert.match(render(wc.ResultConfiguration.OutputLocation), /\/athena-results\/$/);
  const files = namedQueries(path.join(root, 'infra', 'athena'));
  const nq = resourcesOfType(json, 'AWS::Athena::NamedQuery').map(([, p]) => [p.Name, p.QueryString]);
  assert.deepEqual(nq.sort(), files.map((f) => [f.id, f.sql]).sort());
  for (const want of ['cost-per-job-per-day', 'waste-requested-vs-used', 'usage-p95-cpu-max-memory', 'interruptions-per-pool']) {
    assert.ok(files.some((f) => f.id === want), want);
  }
});

test('profiles are exported daily to S3 by EventBridge Scheduler, with a scoped role', () => {
  const [[, sch]] = resourcesOfType(json, 'AWS::Scheduler::Schedule');
  const target = sch.Target as any;
  assert.equal(target.Arn, 'arn:aws:scheduler:::aws-sdk:dynamodb:exportTableToPointInTime');
  assert.match(render(target.Input), /"S3Prefix":"exports\/profiles"/);
});

/** An Athena column type as the coarse shape shared/core/tests/athena_contract.rs writes. */
function shapeOf(type: string): unknown {
  let i = 0;
  const parse = (): unknown => {
    const word = /^[a-z]+/.exec(type.slice(i))?.[0] ?? '';
    i += word.length;
    if (word === 'struct' || word === 'array') {
      assert.equal(type[i], '<', type);
      i += 1;
      if (word === 'array') {
        const inner = parse();
        assert.equal(type[i], '>', type);
        i += 1;
        return { array: inner };
      }
      const fields: Record<string, unknown> = {};
      for (;;) {
        const name = /^[a-z_0-9]+/.exec(type.slice(i))?.[0] ?? '';
        i += name.length;
        assert.equal(type[i], ':', type);
        i += 1;
        fields[name] = parse();
        if (type[i] === ',') { i += 1; continue; }
        assert.equal(type[i], '>', type);
        i += 1;
        return fields;
      }
    }
    const coarse: Record<string, string> = { int: 'integer', bigint: 'integer', double: 'double', string: 'string', boolean: 'boolean' };
    assert.ok(coarse[word], `unknown Athena type ${word} in ${type}`);
    return coarse[word];
  };
  return parse();
}

const sortKeys = (v: unknown): unknown =>
  v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]))
    : v;

test('the Athena columns are what the Rust types write (infra/athena/schema.json)', () => {
  const schema = JSON.parse(fs.readFileSync(path.join(root, 'infra', 'athena', 'schema.json'), 'utf8'));
  const table = (cols: [string, string][]) => sortKeys(Object.fromEntries(cols.map(([n, t]) => [n, shapeOf(t)])));
  assert.deepEqual(table(SAMPLE_COLUMNS), sortKeys(schema.samples), 'samples');
  assert.deepEqual(table(RUN_COLUMNS), sortKeys(schema.runs), 'runs');
  assert.deepEqual(table(RECORD_COLUMNS), sortKeys(schema.run_records), 'run_records');
});

/**
 * The variables a function reads, from its `pub const ENV: &[&str]` in functions/<name>/src/lib.rs,
 * with each constant resolved in shared/aws/src/config.rs or the function's own lib.rs; and which
 * of them are optional (documented "Optional" or with a default).
 */
function rustEnv(name: string): { all: Set<string>; optional: Set<string> } {
  const lib = fs.readFileSync(path.join(root, 'functions', name, 'src', 'lib.rs'), 'utf8');
  const config = fs.readFileSync(path.join(root, 'shared', 'aws', 'src', 'config.rs'), 'utf8');
  const m = lib.match(/pub const ENV: &\[&str\] = &\[([^\]]*)\]/);
  assert.ok(m, `${name}: no pub const ENV`);
  const consts = (src: string) => {
    const out = new Map<string, { value: string; optional: boolean }>();
    for (const c of src.matchAll(/((?:\/\/\/[^\n]*\n)*)pub const ([A-Z_]+): &str = "([A-Z_]+)";/g)) {
      out.set(c[2], { value: c[3], optional: /Optional|default/.test(c[1]) });
    }
    return out;
  };
  const known = new Map([...consts(config), ...consts(lib)]);
  const all = new Set<string>();
  const optional = new Set<string>();
  for (const ident of m[1].split(',').map((x) => x.trim().replace(/^.*::/, '')).filter(Boolean)) {
    const c = known.get(ident);
    assert.ok(c, `${name}: ENV names ${ident}, which is no &str constant`);
    all.add(c.value);
    if (c.optional) optional.add(c.value);
  }
  return { all, optional };
}

test('each function gets only the environment variables its Rust code reads, and every one it requires', () => {
  const fns = resourcesOfType(json, 'AWS::Lambda::Function').filter(([, f]) => String(f.Description ?? '').startsWith('spotfit '));
  assert.equal(fns.length, 6);
  for (const [id, f] of fns) {
    const name = String(f.Description).slice('spotfit '.length);
    const set = new Set(Object.keys(((f.Environment as any)?.Variables ?? {}) as Record<string, string>));
    const { all, optional } = rustEnv(name);
    for (const v of set) assert.ok(all.has(v), `${id} (${name}): the stack sets ${v}, which the function does not read`);
    for (const v of all) assert.ok(optional.has(v) || set.has(v), `${id} (${name}): the function requires ${v}, the stack does not set it`);
  }
  // Not every function needs every table: size-job has no business with EC2 settings.
  const size = fns.find(([, f]) => f.Description === 'spotfit size-job')![1] as any;
  assert.equal(size.Environment.Variables.SPOTFIT_LAUNCH_TEMPLATE_ID, undefined);
});

test('architecture, AMI and agent binary must agree: an inconsistent set fails synth naming the setting', () => {
  assert.throws(() => synth({ 'spotfit:architecture': 'arm64' }), /context spotfit:architecture: is arm64 but spotfit:imageId .* x86_64/);
  assert.throws(
    () =>
      synth({
        'spotfit:architecture': 'arm64',
        'spotfit:imageId': 'resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
      }),
    /context spotfit:agentKey: agent\/x86_64\/spotfit is an x86_64 agent/,
  );
  assert.throws(() => synth({ 'spotfit:architecture': 'sparc' }), /spotfit:architecture: must be one of/);
  synth({
    'spotfit:architecture': 'arm64',
    'spotfit:imageId': 'resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
    'spotfit:agentKey': 'agent/arm64/spotfit',
  });
});
