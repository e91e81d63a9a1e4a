// The local Step Functions service (local-sfn.mjs): the callback pattern, its timeouts, the
// token rules, StopExecution and its status-change event, and the control-plane accounting
// (transitions, history events) — on a tiny ASL and on the real spotfit.asl.json with stub
// handlers (stubs/invoke.mjs). `node --test statemachine/tests/local-sfn.test.mjs`
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const CALLBACK = 'arn:aws:states:::lambda:invoke.waitForTaskToken';
const fnArn = (f) => `arn:aws:lambda:us-east-1:123456789012:function:${f}`;
const ROLES = Object.fromEntries(['work', 'await', 'size-job', 'launch-instance', 'check-job', 'terminate-instance', 'record-run']
  .map(f => [f, { AccessKeyId: `AK-${f}`, SecretAccessKey: 's', SessionToken: 't' }]));
const SECONDS_MS = 50; // one ASL second lasts 50 ms here

const TINY = {
  StartAt: 'Work',
  States: {
    Work: { Type: 'Task', Resource: fnArn('work'), Next: 'Await' },
    Await: {
      Type: 'Task', Resource: CALLBACK,
      Parameters: { FunctionName: fnArn('await'), Payload: { 'token.$': '$$.Task.Token', 'state.$': '$' } },
      TimeoutSecondsPath: '$.wait_s', HeartbeatSecondsPath: '$.heartbeat_s',
      Retry: [{ ErrorEquals: ['Lambda.Unknown'], MaxAttempts: 2, IntervalSeconds: 1, BackoffRate: 2 }],
      Catch: [
        { ErrorEquals: ['States.Timeout'], ResultPath: '$.caught', Next: 'TimedOut' },
        { ErrorEquals: ['States.HeartbeatTimeout'], ResultPath: '$.caught', Next: 'Lost' },
      ],
      Next: 'Done',
    },
    Done: { Type: 'Succeed' },
    TimedOut: { Type: 'Pass', End: true },
    Lost: { Type: 'Pass', End: true },
  },
};

function startService(definition, dir, extra = []) {
  const defFile = join(dir, 'def.json');
  writeFileSync(defFile, JSON.stringify(definition));
  const p = spawn(process.execPath, [join(here, 'local-sfn.mjs'), '--port', '0', '--definition', defFile,
    '--seconds-ms', String(SECONDS_MS), '--retry-ms', '20', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env, SPOTFIT_LOCAL_INVOKE: join(here, 'stubs', 'invoke.mjs'), SPOTFIT_ROLES_DIR: dir, STUB_LOG: dir,
      SPOTFIT_PUT_EVENT: join(here, 'stubs', 'put-event.sh'), AWS_ENDPOINT_URL_SFN: '',
    },
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: p.stdout }).once('line', (l) => resolve({ p, url: `http://127.0.0.1:${JSON.parse(l).port}` }));
    p.once('exit', (c) => reject(new Error(`local-sfn exited ${c}`)));
  });
}

function client(url) {
  const call = async (op, body, key = 'AKIATEST') => {
    const r = await fetch(url + '/', {
      method: 'POST', body: JSON.stringify(body),
      headers: {
        'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AWSStepFunctions.${op}`,
        authorization: `AWS4-HMAC-SHA256 Credential=${key}/20261126/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0`,
      },
    });
    return { status: r.status, body: await r.json() };
  };
  const ok = async (op, body, key) => { const r = await call(op, body, key); assert.equal(r.status, 200, `${op}: ${JSON.stringify(r.body)}`); return r.body; };
  return {
    call, ok,
    start: (name, input, sm = 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit') => ok('StartExecution', { stateMachineArn: sm, name, input: JSON.stringify(input) }),
    async wait(arn, ms = 20000) {
      const t0 = Date.now();
      for (;;) {
        const d = await ok('DescribeExecution', { executionArn: arn });
        if (d.status !== 'RUNNING') return d;
        if (Date.now() - t0 > ms) throw new Error(`${arn} still RUNNING after ${ms} ms`);
        await new Promise(r => setTimeout(r, 30));
      }
    },
    async history(arn) { return (await ok('GetExecutionHistory', { executionArn: arn, maxResults: 1000 })).events; },
    async stats(name) { const s = await fetch(url + '/_local/stats').then(r => r.json()); return s.executions.find(e => e.name === name); },
  };
}
const lines = (f) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map(l => JSON.parse(l)) : []);
async function tokenFor(dir, pred, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    const t = lines(join(dir, 'tokens.jsonl')).filter(pred);
    if (t.length) return t[t.length - 1].token;
    if (Date.now() - t0 > ms) throw new Error('no token recorded');
    await new Promise(r => setTimeout(r, 20));
  }
}
const types = (events) => events.map(e => e.type);

// ---- the tiny machine ---------------------------------------------------------------------------
let tiny; let tinyDir; let c;
before(async () => {
  tinyDir = mkdtempSync(join(tmpdir(), 'local-sfn-tiny-'));
  writeFileSync(join(tinyDir, 'roles.json'), JSON.stringify(ROLES));
  tiny = await startService(TINY, tinyDir);
  c = client(tiny.url);
});
after(() => { tiny?.p.kill('SIGTERM'); real?.p.kill('SIGTERM'); });

test('a callback completes the wait: SendTaskSuccess output is the task result', async () => {
  const { executionArn } = await c.start('ok-1', { mode: 'success', wait_s: 1000, heartbeat_s: 1000 });
  assert.equal(executionArn, 'arn:aws:states:us-east-1:123456789012:execution:spotfit:ok-1');
  const d = await c.wait(executionArn);
  assert.equal(d.status, 'SUCCEEDED');
  assert.deepEqual(JSON.parse(d.output), { mode: 'success', wait_s: 1000, heartbeat_s: 1000, worked: 1, done: true });
  const ev = await c.history(executionArn);
  assert.deepEqual(types(ev), ['ExecutionStarted',
    'TaskStateEntered', 'LambdaFunctionScheduled', 'LambdaFunctionStarted', 'LambdaFunctionSucceeded', 'TaskStateExited',
    'TaskStateEntered', 'TaskScheduled', 'TaskStarted', 'TaskSubmitted', 'TaskSucceeded', 'TaskStateExited',
    'SucceedStateEntered', 'SucceedStateExited', 'ExecutionSucceeded']);
  const sched = ev.find(e => e.type === 'TaskScheduled').taskScheduledEventDetails;
  assert.equal(sched.resourceType, 'lambda');
  assert.equal(sched.timeoutInSeconds, 1000);
  assert.equal(sched.heartbeatInSeconds, 1000);
  const params = JSON.parse(sched.parameters);
  assert.equal(params.FunctionName, fnArn('await'));
  assert.ok(params.Payload.token.length > 100, 'an unguessable token');
  assert.deepEqual(ev.map(e => e.id), ev.map((_, i) => i + 1));
  const s = await c.stats('ok-1');
  assert.equal(s.transitions, 3); // Work, Await, Done
  assert.equal(s.events, 15);
  assert.deepEqual(Object.keys(s.invocations).sort(), ['await', 'work']);
  assert.equal(s.callbacks[0].accessKeyId, 'AK-await', 'the callback ran on the arming function\'s role');
});

test('a second SendTaskSuccess for the same token is TaskTimedOut and makes no second transition', async () => {
  const { executionArn } = await c.start('dup-1', { mode: 'hold', id: 'dup-1', wait_s: 1000, heartbeat_s: 1000 });
  const token = await tokenFor(tinyDir, t => t.state.id === 'dup-1');
  const [a, b] = await Promise.all([
    c.call('SendTaskSuccess', { taskToken: token, output: '{"n":1}' }, 'AKSWEEP'),
    c.call('SendTaskSuccess', { taskToken: token, output: '{"n":2}' }, 'AKEVENTS'),
  ]);
  assert.deepEqual([a.status, b.status].sort(), [200, 400]);
  const gone = a.status === 400 ? a : b;
  assert.equal(gone.body.__type, 'TaskTimedOut');
  const d = await c.wait(executionArn);
  assert.equal(d.status, 'SUCCEEDED');
  const third = await c.call('SendTaskSuccess', { taskToken: token, output: '{}' });
  assert.equal(third.body.__type, 'TaskTimedOut');
  const ev = await c.history(executionArn);
  assert.equal(types(ev).filter(t => t === 'TaskSucceeded').length, 1);
  const s = await c.stats('dup-1');
  assert.equal(s.transitions, 3);
  assert.deepEqual(s.callbacks.map(x => x.accessKeyId).sort(), ['AKEVENTS', 'AKIATEST', 'AKSWEEP']);
  assert.equal((await c.call('SendTaskSuccess', { taskToken: 'AQnever-issued', output: '{}' })).body.__type, 'InvalidToken');
  assert.equal((await c.call('SendTaskHeartbeat', { taskToken: token })).body.__type, 'TaskTimedOut');
});

test('no heartbeat within HeartbeatSecondsPath → States.HeartbeatTimeout, caught', async () => {
  const { executionArn } = await c.start('hb-1', { mode: 'hold', id: 'hb-1', wait_s: 1000, heartbeat_s: 4 });
  const d = await c.wait(executionArn);
  assert.equal(d.status, 'SUCCEEDED');
  const out = JSON.parse(d.output);
  assert.equal(out.caught.Error, 'States.HeartbeatTimeout');
  const ev = await c.history(executionArn);
  const to = ev.find(e => e.type === 'TaskTimedOut');
  assert.equal(to.taskTimedOutEventDetails.error, 'States.HeartbeatTimeout');
  assert.equal(ev.at(-3).stateEnteredEventDetails.name, 'Lost');
});

test('TimeoutSecondsPath → States.Timeout, caught; the token is gone afterwards', async () => {
  const { executionArn } = await c.start('to-1', { mode: 'hold', id: 'to-1', wait_s: 8, heartbeat_s: 1000 });
  const token = await tokenFor(tinyDir, t => t.state.id === 'to-1');
  const d = await c.wait(executionArn);
  assert.equal(JSON.parse(d.output).caught.Error, 'States.Timeout');
  assert.ok(types(await c.history(executionArn)).includes('TaskTimedOut'));
  assert.equal((await c.call('SendTaskSuccess', { taskToken: token, output: '{}' })).body.__type, 'TaskTimedOut');
});

test('StopExecution → ABORTED, the status-change event goes to SPOTFIT_PUT_EVENT, the token is gone', async () => {
  const { executionArn } = await c.start('stop-1', { mode: 'hold', id: 'stop-1', wait_s: 1000, heartbeat_s: 1000 });
  const token = await tokenFor(tinyDir, t => t.state.id === 'stop-1');
  const r = await c.ok('StopExecution', { executionArn, error: 'Cancelled', cause: 'spotfit cancel' });
  assert.equal(typeof r.stopDate, 'number');
  const d = await c.wait(executionArn);
  assert.equal(d.status, 'ABORTED');
  assert.equal(d.error, 'Cancelled');
  assert.equal((await c.call('SendTaskSuccess', { taskToken: token, output: '{}' })).body.__type, 'TaskTimedOut');
  const ev = await c.history(executionArn);
  assert.equal(ev.at(-1).type, 'ExecutionAborted');
  assert.deepEqual(ev.at(-1).executionAbortedEventDetails, { error: 'Cancelled', cause: 'spotfit cancel' });
  let events = [];
  for (let i = 0; i < 100 && !events.length; i++) {
    events = lines(join(tinyDir, 'events.jsonl')).filter(e => e.detail.name === 'stop-1');
    await new Promise(r => setTimeout(r, 20));
  }
  assert.equal(events.length, 1);
  const e = events[0];
  assert.equal(e.source, 'aws.states');
  assert.equal(e['detail-type'], 'Step Functions Execution Status Change');
  assert.deepEqual(e.resources, [executionArn]);
  assert.equal(e.region, 'us-east-1');
  assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(Object.keys(e.detail).sort(), ['cause', 'error', 'executionArn', 'input', 'inputDetails', 'name', 'output',
    'outputDetails', 'startDate', 'stateMachineArn', 'status', 'stopDate'].sort());
  assert.equal(e.detail.status, 'ABORTED');
  assert.equal(e.detail.executionArn, executionArn);
  assert.equal(e.detail.stateMachineArn, 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit');
  assert.ok(Number.isInteger(e.detail.startDate) && e.detail.stopDate >= e.detail.startDate, 'dates in epoch ms');
  assert.equal(JSON.parse(e.detail.input).id, 'stop-1');
  assert.equal(e.detail.output, null);
  // StopExecution again: no second event, no change.
  await c.ok('StopExecution', { executionArn });
  assert.equal((await c.stats('stop-1')).put_events.length, 1);
});

test('a 14-day wait (4,032 heartbeats: one per 5-minute sweep, on a compressed clock) writes the same few history events as a short one', async () => {
  const counts = {};
  for (const [name, beats] of [['beat-10', 10], ['beat-14d', 14 * 24 * 12]]) {
    const { executionArn } = await c.start(name, { mode: 'hold', id: name, wait_s: 100000, heartbeat_s: 10 }); // 500 ms
    const token = await tokenFor(tinyDir, t => t.state.id === name);
    const t0 = Date.now();
    for (let i = 0; i < beats; i++) await c.ok('SendTaskHeartbeat', { taskToken: token }, 'AKSWEEP');
    const held = Date.now() - t0;
    await c.ok('SendTaskSuccess', { taskToken: token, output: JSON.stringify({ beats }) }, 'AKSWEEP');
    const d = await c.wait(executionArn);
    assert.equal(d.status, 'SUCCEEDED', `${name}: ${d.error} ${d.cause}`);
    const s = await c.stats(name);
    assert.equal(s.tasks[0].heartbeats, beats);
    if (beats > 10) assert.ok(held > 10 * SECONDS_MS, `the heartbeats spanned ${held} ms, more than one heartbeat window`);
    counts[name] = { events: s.events, transitions: s.transitions, held };
  }
  assert.ok(counts['beat-14d'].events < 50, JSON.stringify(counts));
  assert.equal(counts['beat-14d'].events, counts['beat-10'].events, JSON.stringify(counts));
  assert.equal(counts['beat-14d'].transitions, counts['beat-10'].transitions);
  console.log(`# heartbeats: ${JSON.stringify(counts)}`);
});

test('a lost arm invocation (Lambda.Unknown) is retried with a fresh token: one more transition', async () => {
  await fetch(tiny.url + '/_local/faults', { method: 'POST', body: JSON.stringify({ timeout_once: 'await:1', execution: 'fault-1' }) });
  const { executionArn } = await c.start('fault-1', { mode: 'hold', id: 'fault-1', wait_s: 1000, heartbeat_s: 1000 });
  let toks = [];
  for (let i = 0; i < 500 && toks.length < 2; i++) {
    toks = lines(join(tinyDir, 'tokens.jsonl')).filter(t => t.state.id === 'fault-1').map(t => t.token);
    await new Promise(r => setTimeout(r, 20));
  }
  assert.equal(toks.length, 2);
  assert.notEqual(toks[0], toks[1]);
  assert.equal((await c.call('SendTaskSuccess', { taskToken: toks[0], output: '{}' })).body.__type, 'TaskTimedOut');
  await c.ok('SendTaskSuccess', { taskToken: toks[1], output: '{"second":true}' });
  const d = await c.wait(executionArn);
  assert.deepEqual(JSON.parse(d.output), { second: true });
  const ev = await c.history(executionArn);
  assert.equal(types(ev).filter(t => t === 'TaskScheduled').length, 2);
  assert.equal(ev.find(e => e.type === 'TaskFailed').taskFailedEventDetails.error, 'Lambda.Unknown');
  assert.equal((await c.stats('fault-1')).transitions, 4); // Work, Await, Await's retry, Done
});

test('StartExecution: same name and input while running is the same execution; otherwise ExecutionAlreadyExists', async () => {
  const input = { mode: 'hold', id: 'idem-1', wait_s: 1000, heartbeat_s: 1000 };
  const a = await c.start('idem-1', input);
  const b = await c.start('idem-1', input);
  assert.deepEqual(a, b);
  const r = await c.call('StartExecution', { stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit', name: 'idem-1', input: '{"other":1}' });
  assert.equal(r.body.__type, 'ExecutionAlreadyExists');
  await c.ok('StopExecution', { executionArn: a.executionArn });
  const again = await c.call('StartExecution', { stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit', name: 'idem-1', input: JSON.stringify(input) });
  assert.equal(again.body.__type, 'ExecutionAlreadyExists');
  assert.equal((await c.call('DescribeExecution', { executionArn: a.executionArn + 'x' })).body.__type, 'ExecutionDoesNotExist');
  assert.equal((await c.call('NoSuchOp', {})).status, 400);
});

test('GetExecutionHistory pages with maxResults/nextToken; ListExecutions lists', async () => {
  const arn = 'arn:aws:states:us-east-1:123456789012:execution:spotfit:ok-1';
  const all = await c.history(arn);
  const paged = [];
  let nextToken;
  do {
    const p = await c.ok('GetExecutionHistory', { executionArn: arn, maxResults: 4, ...(nextToken ? { nextToken } : {}) });
    assert.ok(p.events.length <= 4);
    paged.push(...p.events);
    nextToken = p.nextToken;
  } while (nextToken);
  assert.deepEqual(paged, all);
  const rev = await c.ok('GetExecutionHistory', { executionArn: arn, reverseOrder: true, maxResults: 1 });
  assert.equal(rev.events[0].type, 'ExecutionSucceeded');
  const l = await c.ok('ListExecutions', { stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit', statusFilter: 'ABORTED' });
  assert.ok(l.executions.some(e => e.name === 'stop-1'));
});

// ---- the real state machine -------------------------------------------------------------------
let real; let realDir; let rc;
async function realService() {
  if (real) return;
  realDir = mkdtempSync(join(tmpdir(), 'local-sfn-real-'));
  writeFileSync(join(realDir, 'roles.json'), JSON.stringify(ROLES));
  real = await startService(JSON.parse(readFileSync(join(here, '..', 'spotfit.asl.json'), 'utf8')), realDir);
  rc = client(real.url);
}
const spec = (scenario) => ({ name: 'etl', command: ['true'], timeout_s: 3600, scenario });

test('spotfit.asl.json, callback path: Launch → Await → Ended? → Terminate → Record → Outcome', async () => {
  await realService();
  const { executionArn } = await rc.start('real-cb', spec({ id: 'real-cb', arms: ['succeed'] }));
  const d = await rc.wait(executionArn);
  assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);
  const s = await rc.stats('real-cb');
  assert.deepEqual(s.states, ['Size', 'Launch', 'Await', 'Ended?', 'Terminate', 'Record', 'Outcome', 'Succeeded']);
  const ev = await rc.history(executionArn);
  const sched = JSON.parse(ev.find(e => e.type === 'TaskScheduled').taskScheduledEventDetails.parameters);
  assert.equal(sched.FunctionName, fnArn('check-job'));
  assert.equal(sched.Payload.state.run_id, '20261126T000000Z-0000abcd');
  assert.equal(ev.find(e => e.type === 'TaskScheduled').taskScheduledEventDetails.timeoutInSeconds, 4200, 'wait_s of Launch.out.json');
  assert.equal(ev.find(e => e.type === 'TaskScheduled').taskScheduledEventDetails.heartbeatInSeconds, 900);
  assert.equal(s.callbacks.length, 1);
  assert.equal(s.callbacks[0].accessKeyId, 'AK-check-job');
  // One attempt, Launch through Outcome: its transitions and history events.
  const from = ev.findIndex(e => e.stateEnteredEventDetails?.name === 'Launch');
  const to = ev.findIndex(e => e.stateExitedEventDetails?.name === 'Outcome');
  const attempt = ev.slice(from, to + 1);
  const attemptTransitions = attempt.filter(e => e.type.endsWith('StateEntered')).length;
  assert.equal(attemptTransitions, 6);
  assert.ok(attempt.length <= 26, `${attempt.length} events`);
  console.log(`# real ASL, one attempt (Launch..Outcome): ${attemptTransitions} transitions, ${attempt.length} history events; `
    + `whole execution: ${s.transitions} transitions, ${s.events} events; invocations ${JSON.stringify(s.invocations)}`);
});

test('spotfit.asl.json, timeout path: Await → Check (running) → Ended? → Await → callback → Succeeded', async () => {
  await realService();
  const { executionArn } = await rc.start('real-to', spec({ id: 'real-to', wait_s: 1, arms: ['silent', 'succeed'], checks: ['running'] }));
  const d = await rc.wait(executionArn);
  assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);
  const s = await rc.stats('real-to');
  assert.deepEqual(s.states, ['Size', 'Launch', 'Await', 'Check', 'Ended?', 'Await', 'Ended?', 'Terminate', 'Record', 'Outcome', 'Succeeded']);
  const ev = await rc.history(executionArn);
  assert.equal(ev.find(e => e.type === 'TaskTimedOut').taskTimedOutEventDetails.error, 'States.Timeout');
  const secondArm = ev.filter(e => e.type === 'TaskScheduled')[1].taskScheduledEventDetails;
  assert.equal(secondArm.timeoutInSeconds, 100, 'the running check refreshed wait_s');
  const tokens = ev.filter(e => e.type === 'TaskScheduled').map(e => JSON.parse(e.taskScheduledEventDetails.parameters).Payload.token);
  assert.notEqual(tokens[0], tokens[1], 'a fresh token per Await entry');
  // The Check state got the plain RunState (ResultPath null kept it), not {token, state}.
  const checkIn = JSON.parse(ev.find(e => e.type === 'TaskStateEntered' && e.stateEnteredEventDetails.name === 'Check').stateEnteredEventDetails.input);
  assert.equal(checkIn.run_id, '20261126T000000Z-0000abcd');
  assert.equal(checkIn.error, undefined);
});

test('spotfit.asl.json, heartbeat lost and the deadline passed: Check → JobTimedOut, FAILED event put', async () => {
  await realService();
  const { executionArn } = await rc.start('real-hb', spec({ id: 'real-hb', wait_s: 1000, heartbeat_s: 2, arms: ['silent'], checks: ['timed_out'] }));
  const d = await rc.wait(executionArn);
  assert.equal(d.status, 'FAILED');
  assert.equal(d.error, 'JobTimedOut');
  const s = await rc.stats('real-hb');
  assert.deepEqual(s.states, ['Size', 'Launch', 'Await', 'Check', 'Ended?', 'Terminate', 'Record', 'Outcome', 'JobTimedOut']);
  const ev = await rc.history(executionArn);
  assert.equal(ev.find(e => e.type === 'TaskTimedOut').taskTimedOutEventDetails.error, 'States.HeartbeatTimeout');
  assert.deepEqual(types(ev).slice(-2), ['FailStateEntered', 'ExecutionFailed']);
  let events = [];
  for (let i = 0; i < 100 && !events.length; i++) {
    events = lines(join(realDir, 'events.jsonl')).filter(e => e.detail.name === 'real-hb');
    await new Promise(r => setTimeout(r, 20));
  }
  assert.equal(events[0]?.detail.status, 'FAILED');
  assert.equal(events[0].detail.error, 'JobTimedOut');
});

test('run-execution.mjs is a client of the service: result line, and --stop-after-state Await:1 aborts', async () => {
  await realService();
  const run = (args) => new Promise((resolve, reject) => execFile(process.execPath, [join(here, 'run-execution.mjs'), ...args],
    { env: { ...process.env, AWS_ENDPOINT_URL_SFN: real.url } }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))));
  const inFile = join(realDir, 'in.json');
  writeFileSync(inFile, JSON.stringify(spec({ id: 'cli-ok', arms: ['succeed'] })));
  const ok = await run([inFile, 'cli-ok']);
  assert.equal(ok.status, 'SUCCEEDED');
  assert.deepEqual(ok.states, ['Size', 'Launch', 'Await', 'Terminate', 'Record']);
  assert.deepEqual(ok.entered, ['Size', 'Launch', 'Await', 'Ended?', 'Terminate', 'Record', 'Outcome', 'Succeeded']);
  assert.equal(ok.transitions, 8);
  assert.equal(typeof ok.events, 'number');
  writeFileSync(inFile, JSON.stringify(spec({ id: 'cli-stop', arms: ['silent'] })));
  const stopped = await run([inFile, 'cli-stop', '--stop-after-state', 'Await:1']);
  assert.equal(stopped.status, 'ABORTED');
  assert.equal(stopped.cause, 'test stop');
  writeFileSync(inFile, JSON.stringify(spec({ id: 'cli-fault', arms: ['succeed'] })));
  const faulted = await run([inFile, 'cli-fault', '--timeout-once', 'launch-instance:1']);
  assert.equal(faulted.status, 'SUCCEEDED');
  assert.deepEqual(faulted.states.slice(0, 4), ['Size', 'Launch', 'Launch:timed-out', 'Launch']);
  assert.equal(faulted.transitions, 9, 'the retry is one more transition');
});

test('Step Functions\' limits: a polling loop fails at the history limit, uncaught; an output over 256 KiB is InvalidOutput', async () => {
  // The loop the callback replaced, in miniature: a poll is three states (entered and exited).
  const loop = {
    StartAt: 'Poll',
    States: {
      Poll: { Type: 'Pass', Next: 'Ended?' },
      'Ended?': { Type: 'Choice', Choices: [{ Variable: '$.done', BooleanEquals: true, Next: 'Done' }], Default: 'Wait' },
      Wait: { Type: 'Wait', Seconds: 0, Next: 'Poll' },
      Done: { Type: 'Succeed' },
    },
  };
  const dir = mkdtempSync(join(tmpdir(), 'sfn-limit-'));
  writeFileSync(join(dir, 'roles.json'), '{}');
  const svc = await startService(loop, dir, ['--history-limit', '200']);
  try {
    const lc = client(svc.url);
    const { executionArn } = await lc.start('loop-1', { done: false });
    const d = await lc.wait(executionArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'States.Runtime');
    const ev = await lc.history(executionArn);
    assert.equal(ev.length, 200);
    assert.equal(ev.at(-1).type, 'ExecutionFailed');
  } finally {
    svc.p.kill();
  }
  const { executionArn } = await c.start('big-out', { mode: 'hold', id: 'big-out', wait_s: 1000, heartbeat_s: 1000 });
  const token = await tokenFor(tinyDir, t => t.state.id === 'big-out');
  const big = await c.call('SendTaskSuccess', { taskToken: token, output: JSON.stringify({ pad: 'x'.repeat(262144) }) });
  assert.equal(big.body.__type, 'InvalidOutput');
  await c.ok('SendTaskSuccess', { taskToken: token, output: '{}' });
  assert.equal((await c.wait(executionArn)).status, 'SUCCEEDED');
});
