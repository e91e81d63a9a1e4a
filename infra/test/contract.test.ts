// The stack against its contracts: the ASL file, the jobs file, the Athena SQL files, the
// Lambda zips, and the context parameters (each bad value fails synth naming its key).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import { FUNCTION_NAMES } from '../lib/lambda-code';
import * as os from 'os';
import * as path from 'path';
import { namedQueries, RECORD_COLUMNS, RUN_COLUMNS, SAMPLE_COLUMNS } from '../lib/analytics';
import { defaultStateMachineFile, repoRoot } from '../lib/config';
import { loadJobs } from '../lib/jobs';
import { checkAsl, heartbeatSeconds, SUBSTITUTIONS } from '../lib/spotfit-stack';
import { asArray, awaitAsl, render, resourcesOfType, synth } from './helpers';

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
  // Other callback integrations (SQS, an activity) stay out.
  const sqs = { StartAt: 'T', States: { T: { Type: 'Task', Resource: 'arn:aws:states:::sqs:sendMessage.waitForTaskToken', End: true } } };
  assert.throws(() => checkAsl(JSON.stringify(sqs), 'x.json'), /lambda:invoke only/);
});

test('the ASL check: a Lambda integration (plain or waitForTaskToken) must name one of our functions', () => {
  const task = (resource: string, params: unknown) =>
    JSON.stringify({ StartAt: 'T', States: { T: { Type: 'Task', Resource: resource, Parameters: params, End: true } } });
  for (const r of ['arn:aws:states:::lambda:invoke', 'arn:aws:states:::lambda:invoke.waitForTaskToken']) {
    checkAsl(task(r, { FunctionName: '${CheckJobArn}', Payload: { 'token.$': '$$.Task.Token', 'state.$': '$' } }), 'x.json');
    assert.throws(() => checkAsl(task(r, { FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:other' }), 'x.json'), /FunctionName must be one of/);
    assert.throws(() => checkAsl(task(r, { 'FunctionName.$': '$.fn' }), 'x.json'), /calls FunctionName\.\$ "\$\.fn"/);
    assert.throws(() => checkAsl(task(r, { Payload: {} }), 'x.json'), /FunctionName must be one of/);
    assert.throws(() => checkAsl(task(r, undefined), 'x.json'), /FunctionName must be one of/);
  }
});

test('the stack synthesizes the contract\'s Await state (docs/callback.md), and its role may invoke only our functions', () => {
  const file = awaitAsl();
  const { json: j, stack: st } = synth({ 'spotfit:stateMachineFile': file });
  const [[smId, sm]] = resourcesOfType(j, 'AWS::StepFunctions::StateMachine');
  assert.equal(sm.DefinitionString, fs.readFileSync(file, 'utf8'));
  const doc = JSON.parse(sm.DefinitionString as string);
  const aw = doc.States.Await;
  assert.equal(aw.Resource, 'arn:aws:states:::lambda:invoke.waitForTaskToken');
  assert.equal(aw.Parameters.FunctionName, '${CheckJobArn}');
  assert.equal(aw.HeartbeatSecondsPath, '$.instance.heartbeat_s');
  const subs = sm.DefinitionSubstitutions as Record<string, unknown>;
  const checkJob = st.getLogicalId(st.functions['check-job'].node.defaultChild as never);
  assert.deepEqual(subs.CheckJobArn, { 'Fn::GetAtt': [checkJob, 'Arn'] });
  // No dependency cycle: check-job's role answers the state machine's tokens from a policy the
  // function does not depend on.
  const fnDeps = asArray((j.Resources[checkJob] as { DependsOn?: string | string[] }).DependsOn);
  const taskResponse = Object.keys(j.Resources).find((k) => k.startsWith('TaskResponse'))!;
  assert.ok(!fnDeps.includes(taskResponse), `check-job depends on ${taskResponse}`);
  assert.ok(smId);
});

test('the Await heartbeat: three reaper periods, passed to launch-instance, far under Step Functions\' bounds', () => {
  const launch = (j: typeof json) =>
    resourcesOfType(j, 'AWS::Lambda::Function').find(([, f]) => f.Description === 'spotfit launch-instance')![1] as any;
  assert.equal(launch(json).Environment.Variables.SPOTFIT_HEARTBEAT_S, '900');
  assert.equal(heartbeatSeconds(5), 900);
  const { json: slow } = synth({ 'spotfit:reaperEveryMinutes': 1440 });
  assert.equal(launch(slow).Environment.Variables.SPOTFIT_HEARTBEAT_S, '259200');
  // The largest schedule the config accepts (1440 minutes) gives 3 days; a standard execution
  // may run a year, and HeartbeatSeconds is an integer of seconds.
  assert.ok(heartbeatSeconds(1440) <= 3 * 86400 && heartbeatSeconds(1440) < 365 * 86400);
  assert.throws(() => synth({ 'spotfit:reaperEveryMinutes': 1441 }), /spotfit:reaperEveryMinutes/);
  // The launcher puts it in the state (the Await state reads it there); the reaper's sweep takes a
  // third of it as its own period. No other function carries it.
  const carriers = resourcesOfType(json, 'AWS::Lambda::Function')
    .filter(([, f]) => (f as any).Environment?.Variables?.SPOTFIT_HEARTBEAT_S)
    .map(([, f]) => String(f.Description));
  assert.deepEqual(carriers.sort(), ['spotfit launch-instance', 'spotfit reap-instances']);
});

const escapeRegExp = (x: string) => x.replace(/[.+?^$()|[\]\\{}]/g, (c) => `\\${c}`);
const targeting = (name: keyof typeof stack.functions) => {
  const arn = JSON.stringify({ 'Fn::GetAtt': [logicalId(stack.functions[name]), 'Arn'] });
  return resourcesOfType(json, 'AWS::Events::Rule').filter(([, p]) => asArray(p.Targets as { Arn: unknown }[]).some((t) => JSON.stringify(t.Arn) === arn));
};
const ruleById = (prefix: string) => {
  const r = resourcesOfType(json, 'AWS::Events::Rule').filter(([id]) => id.startsWith(prefix));
  assert.equal(r.length, 1, prefix);
  return r[0][1] as any;
};

test('one enabled-or-not EventBridge rule per job in jobs.json → start-scheduled, with the tick and the spec as input', () => {
  const jobs = loadJobs(path.join(root, 'infra', 'jobs.json'));
  assert.ok(jobs.length >= 1);
  const rules = targeting('start-scheduled');
  for (const job of jobs) {
    const r = rules.find(([, p]) => p.ScheduleExpression === job.schedule);
    assert.ok(r, job.name);
    const [target] = r[1].Targets as any[];
    // EventBridge fills <tick> from the event's time ($.time): the scheduled time, the same in
    // a duplicate delivery, from which the run id (the execution name) derives.
    const tr = target.InputTransformer;
    assert.deepEqual(tr.InputPathsMap, { time: '$.time' });
    const filled = JSON.parse(String(tr.InputTemplate).replace('<time>', '"2026-12-03T02:00:00Z"'));
    assert.deepEqual(filled, { tick: '2026-12-03T02:00:00Z', spec: job.spec });
    assert.equal(r[1].State, job.enabled ? 'ENABLED' : 'DISABLED');
    assert.ok(target.DeadLetterConfig, `${job.name}: no dead-letter queue`);
  }
  assert.equal(rules.length, jobs.length);
  // Nothing starts the state machine from EventBridge directly (its executions would be unnamed).
  const smId = logicalId(stack.stateMachine);
  const direct = resourcesOfType(json, 'AWS::Events::Rule').filter(([, p]) => asArray(p.Targets as { Arn: unknown }[]).some((t) => JSON.stringify(t.Arn).includes(smId)));
  assert.deepEqual(direct, []);
  const fn = resourcesOfType(json, 'AWS::Lambda::Function').find(([, f]) => f.Description === 'spotfit start-scheduled')![1] as any;
  assert.deepEqual(fn.Environment.Variables.SPOTFIT_STATE_MACHINE_ARN, { Ref: smId });
});

test('reaper (the heartbeat sweep): on its schedule only', () => {
  const rules = targeting('reap-instances');
  assert.deepEqual(rules.map(([, p]) => p.ScheduleExpression), ['rate(5 minutes)']);
  assert.match(String(rules[0][1].Description), /heartbeat/);
});

test('job-events: EC2 spot warnings and state changes, exit markers, executions that ended', () => {
  const rules = targeting('job-events');
  assert.deepEqual(rules.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort(), ['ExecutionEnds', 'ExitMarkers', 'InstanceStateChanges', 'SpotInterruptions']);
  for (const [id, r] of rules) {
    assert.equal((r.Targets as unknown[]).length, 1, id);
    const [t] = r.Targets as any[];
    assert.deepEqual(t.RetryPolicy, { MaximumRetryAttempts: 2 }, id);
    assert.ok(t.DeadLetterConfig?.Arn, id);
    assert.equal(r.ScheduleExpression, undefined, id);
  }
  assert.deepEqual(ruleById('SpotInterruptions').EventPattern, { source: ['aws.ec2'], 'detail-type': ['EC2 Spot Instance Interruption Warning'] });
  assert.deepEqual(ruleById('InstanceStateChanges').EventPattern, {
    source: ['aws.ec2'],
    'detail-type': ['EC2 Instance State-change Notification'],
    detail: { state: ['shutting-down', 'terminated', 'stopping', 'stopped'] },
  });
  const bucketId = logicalId(stack.bucket);
  assert.deepEqual(ruleById('ExitMarkers').EventPattern, {
    source: ['aws.s3'],
    'detail-type': ['Object Created'],
    detail: { bucket: { name: [{ Ref: bucketId }] }, object: { key: [{ wildcard: 'runs/*.exit' }] } },
  });
  assert.deepEqual(ruleById('ExecutionEnds').EventPattern, {
    source: ['aws.states'],
    'detail-type': ['Step Functions Execution Status Change'],
    detail: { status: ['ABORTED', 'FAILED', 'TIMED_OUT'], stateMachineArn: [{ Ref: logicalId(stack.stateMachine) }] },
  });
  // S3 sends the bucket's events to EventBridge natively (no notifications custom resource).
  const bucket = json.Resources[bucketId].Properties as any;
  assert.deepEqual(bucket.NotificationConfiguration, { EventBridgeConfiguration: { EventBridgeEnabled: true } });
  assert.equal(resourcesOfType(json, 'Custom::S3BucketNotifications').length, 0);
});

test('the exit-marker pattern matches runs/…/*.exit and nothing else (EventBridge wildcard semantics)', () => {
  // EventBridge's wildcard: `*` matches any run of characters, `/` included.
  const pattern = ruleById('ExitMarkers').EventPattern.detail.object.key[0].wildcard as string;
  const re = new RegExp('^' + pattern.split('*').map(escapeRegExp).join('.*') + '$');
  assert.ok(re.test('runs/job=etl/dt=2026-11-02/run-1.exit'));
  assert.ok(!re.test('runs/job=etl/dt=2026-11-02/run-1.json'));
  assert.ok(!re.test('samples/job=etl/dt=2026-11-02/run=x/part-0.exit'));
  assert.ok(!re.test('records/dt=2026-11-02/run-1.exit'));
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

test('the stack declares every output `spotfit --stack NAME` reads (infra/stack-outputs.json, from shared/aws/src/stack.rs)', () => {
  const want: { key: string }[] = JSON.parse(fs.readFileSync(path.join(root, 'infra', 'stack-outputs.json'), 'utf8')).outputs;
  assert.ok(want.length >= 5, 'the contract lists the outputs the CLI reads');
  const outputs = (json as { Outputs?: Record<string, unknown> }).Outputs ?? {};
  for (const { key } of want) assert.ok(key in outputs, `the stack has no output ${key}, which the CLI reads`);
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
  assert.equal(fns.length, FUNCTION_NAMES.length);
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

test('job-events and the waits table: the contract\'s environment, timeout and keys', () => {
  const fns = resourcesOfType(json, 'AWS::Lambda::Function');
  const env = (n: string) => (fns.find(([, f]) => f.Description === `spotfit ${n}`)![1] as any).Environment?.Variables ?? {};
  const je = fns.find(([, f]) => f.Description === 'spotfit job-events')![1] as any;
  assert.equal(je.Timeout, 60);
  const ref = (prefix: string) => ({ Ref: Object.keys(json.Resources).find((k) => k.startsWith(prefix) && json.Resources[k].Type === 'AWS::DynamoDB::Table')! });
  assert.deepEqual(Object.keys(env('job-events')).sort(), ['SPOTFIT_BUCKET', 'SPOTFIT_CAPACITY_TABLE', 'SPOTFIT_RUNS_TABLE', 'SPOTFIT_WAITS_TABLE']);
  for (const n of ['check-job', 'job-events', 'reap-instances']) assert.deepEqual(env(n).SPOTFIT_WAITS_TABLE, ref('Waits'), n);
  for (const n of ['size-job', 'launch-instance', 'terminate-instance', 'record-run']) assert.equal(env(n).SPOTFIT_WAITS_TABLE, undefined, n);
  assert.deepEqual(env('job-events').SPOTFIT_RUNS_TABLE, ref('Runs'));
  assert.deepEqual(env('job-events').SPOTFIT_CAPACITY_TABLE, ref('Capacity'));
});

test('architecture, AMI and agent binary must agree: an inconsistent set fails synth naming the setting', () => {
  assert.throws(() => synth({ 'spotfit:architecture': 'arm64' }), /context spotfit:architecture: is arm64 but spotfit:imageId .* x86_64/);
  assert.throws(
    () =>
      synth({
        'spotfit:architecture': 'arm64',
        'spotfit:imageId': 'resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
      }),
    /context spotfit:agentKey: agent\/x86_64\/spotfit-agent is an x86_64 agent/,
  );
  assert.throws(() => synth({ 'spotfit:architecture': 'sparc' }), /spotfit:architecture: must be one of/);
  synth({
    'spotfit:architecture': 'arm64',
    'spotfit:imageId': 'resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
    'spotfit:agentKey': 'agent/arm64/spotfit-agent',
  });
});
