// A local Step Functions endpoint (AWS JSON 1.0 on loopback) that runs statemachine/spotfit.asl.json
// (or --definition FILE) with aws-local-stepfunctions, every Task served by
// `$SPOTFIT_LOCAL_INVOKE FUNCTION` (payload on stdin) on that function's role credentials
// (`$SPOTFIT_ROLES_DIR/roles.json`), and the callback pattern
// (`arn:aws:states:::lambda:invoke.waitForTaskToken`) done here. Clients: the Rust SDK and boto3
// through AWS_ENDPOINT_URL_SFN; run-execution.mjs; the tests. See docs/callback.md.
//
//   node local-sfn.mjs --port PORT [--definition FILE] [--state-machine-arn ARN]
//                      [--seconds-ms MS] [--retry-ms MS] [--history-limit N] [--warm N]
//
// --warm N: warm Lambda execution environments instead of a cold start per invocation: up to N
// `$SPOTFIT_LOCAL_INVOKE --serve FUNCTION` processes per function (started on demand on the
// function's role credentials, reused; each serves one payload at a time, one JSON line in,
// one line `{"ok": RESULT}` or `{"errorType", "errorMessage"}` out); an invocation that finds
// all N busy waits for one. Without it (the default) every invocation is a cold process.
//
// Prints one line {"port": N} once listening (PORT 0: any free port).
//
// Operations (POST /, X-Amz-Target: AWSStepFunctions.<Op>): StartExecution, DescribeExecution,
// StopExecution, SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat, GetExecutionHistory,
// ListExecutions. Errors: HTTP 400 {"__type": CODE, "message": …}. Signatures are not checked;
// the access key id of every callback call is recorded (GET /_local/stats).
//
// What it follows from AWS (docs/callback.md lists the sources):
// - StartExecution with a name in use: same input and still RUNNING → the same executionArn and
//   startDate; otherwise ExecutionAlreadyExists.
// - A task token that was never issued → InvalidToken; one whose task is over (completed, failed,
//   timed out, execution ended) → TaskTimedOut ("the task token has either expired or the task
//   associated with the token has already been closed"). TaskDoesNotExist is for activities.
// - SendTaskHeartbeat writes no history event; it resets the HeartbeatSeconds clock only; the
//   task's TimeoutSeconds still bounds it.
// - History: Lambda tasks with a function ARN as Resource write TaskStateEntered,
//   LambdaFunctionScheduled, LambdaFunctionStarted, LambdaFunctionSucceeded|Failed|TimedOut,
//   TaskStateExited (a retry schedules again inside the same state: no new TaskStateEntered);
//   .waitForTaskToken tasks write TaskStateEntered, TaskScheduled, TaskStarted, TaskSubmitted
//   (when the invoke returns), TaskSucceeded|TaskFailed|TaskTimedOut, TaskStateExited;
//   Choice: ChoiceStateEntered/Exited; Succeed: SucceedStateEntered/Exited; Fail: FailStateEntered;
//   then ExecutionSucceeded|Failed|Aborted|TimedOut. An uncaught failure writes no *StateExited.
// - Billing (Standard): a state transition each time a step runs, "including retries": here,
//   transitions = states entered + retries.
// - Task TimeoutSeconds has no 60 s default on AWS (aws-local-stepfunctions has one): Tasks get
//   their TimeoutSeconds/TimeoutSecondsPath or none.
//
// Private endpoints: GET /_local/stats; POST /_local/faults {"timeout_once": "FUNCTION:N",
// "execution": NAME?} (the Nth invocation of FUNCTION from now, optionally only in that execution,
// does its work and then is lost as a Lambda timeout: Lambda.Unknown); POST /_local/clock
// {"seconds_ms": MS} (how long one ASL second of TimeoutSeconds/HeartbeatSeconds lasts here).
//
// When an execution ends ABORTED, FAILED or TIMED_OUT, `$SPOTFIT_PUT_EVENT` gets the
// "Step Functions Execution Status Change" event (the full EventBridge event JSON) on stdin.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const stateMachineArn = opt('--state-machine-arn', `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:spotfit`);
const smName = stateMachineArn.split(':').pop();
const definitionFile = opt('--definition', join(here, '..', 'spotfit.asl.json'));
let secondsMs = Number(opt('--seconds-ms', 1000));
const retryMs = Number(opt('--retry-ms', 200));
const warmMax = Number(opt('--warm', 0));
// Step Functions' limits: an execution fails (uncatchably) when its history reaches 25,000
// events; a task's output may be at most 256 KiB. --history-limit lowers the first for tests.
const historyLimit = Number(opt('--history-limit', 25000));
const MAX_PAYLOAD_BYTES = 262144;
const CALLBACK = 'arn:aws:states:::lambda:invoke.waitForTaskToken';
const NO_TIMEOUT_S = 2147483; // under setTimeout's 2^31-1 ms ceiling

const invokeBin = process.env.SPOTFIT_LOCAL_INVOKE;
if (!invokeBin) { console.error('SPOTFIT_LOCAL_INVOKE is not set'); process.exit(2); }
const rolesDir = process.env.SPOTFIT_ROLES_DIR;
if (!rolesDir) { console.error('SPOTFIT_ROLES_DIR is not set: every Task must run on its role\'s credentials'); process.exit(2); }

// ${…Arn} placeholders → example Lambda ARNs, as the infra substitutes them at synth.
const FUNCTIONS = {
  SizeJobArn: 'size-job', LaunchInstanceArn: 'launch-instance', CheckJobArn: 'check-job',
  TerminateInstanceArn: 'terminate-instance', RecordRunArn: 'record-run',
};
const lambdaArn = (fn) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${fn}`;
const definition = JSON.parse(readFileSync(definitionFile, 'utf8')
  .replace(/\$\{(\w+)\}/g, (_, n) => lambdaArn(FUNCTIONS[n] ?? n)));
const fnOf = (arnOrName) => String(arnOrName).split(':function:').pop().split(':')[0];

// The definition the engine runs: Task timeouts and the callback pattern are done here, so the
// engine sees no TimeoutSeconds*/HeartbeatSeconds* (and no 60 s default), and a callback Task
// has no Parameters (its handler resolves them itself, with $$.Task.Token).
const engineDef = JSON.parse(JSON.stringify(definition));
for (const s of Object.values(engineDef.States)) {
  if (s.Type !== 'Task') continue;
  for (const k of ['TimeoutSeconds', 'TimeoutSecondsPath', 'HeartbeatSeconds', 'HeartbeatSecondsPath']) delete s[k];
  s.TimeoutSeconds = NO_TIMEOUT_S;
  if (s.Resource === CALLBACK) delete s.Parameters;
}
new StateMachine(engineDef, { validationOptions: { checkArn: true, checkPaths: true } }); // fail fast

// ---- JSONPath (the reference paths ASL allows) and payload templates -------------------------
function query(path, input, context) {
  let cur; let rest;
  if (path.startsWith('$$')) { cur = context; rest = path.slice(2); } else if (path.startsWith('$')) { cur = input; rest = path.slice(1); } else throw statesError('States.Runtime', `not a path: ${path}`);
  const re = /^(?:\.([A-Za-z_][\w-]*)|\['([^']*)'\]|\[(\d+)\])/;
  while (rest.length) {
    const m = re.exec(rest);
    if (!m) throw statesError('States.Runtime', `unsupported path ${path}`);
    const key = m[1] ?? m[2] ?? Number(m[3]);
    if (cur === null || typeof cur !== 'object' || !(key in cur)) throw statesError('States.Runtime', `The JSONPath '${path}' could not be found in the input`);
    cur = cur[key];
    rest = rest.slice(m[0].length);
  }
  return cur;
}
function template(t, input, context) {
  if (Array.isArray(t)) return t.map(v => template(v, input, context));
  if (t === null || typeof t !== 'object') return t;
  const out = {};
  for (const [k, v] of Object.entries(t)) {
    if (k.endsWith('.$')) {
      if (typeof v === 'string' && v.startsWith('States.')) throw statesError('States.Runtime', `intrinsic functions are not supported here: ${v}`);
      out[k.slice(0, -2)] = query(v, input, context);
    } else out[k] = template(v, input, context);
  }
  return out;
}
function statesError(name, message) { const e = new Error(message); e.name = name; return e; }

// ---- executions, tokens, accounting ---------------------------------------------------------
const executions = new Map(); // arn → execution
const tokens = new Map(); // token → task record
let faults = []; // {fn, n, seen, execution}
const iso = (ms) => new Date(ms).toISOString();
const epoch = (ms) => ms / 1000;

function addEvent(ex, type, detailsKey, details) {
  if (ex.closed) return null; // nothing is written after the execution's last event
  if (ex.status === 'RUNNING' && ex.events.length >= historyLimit - 1) {
    // The last slot is the ExecutionFailed event; no Catch sees this.
    finish(ex, 'FAILED', { error: 'States.Runtime', cause: `The execution reached the maximum number of history events (${historyLimit}).` });
    ex.run?.abort();
    return null;
  }
  const id = ex.events.length + 1;
  const ev = { timestamp: epoch(Date.now()), type, id, previousEventId: id - 1 };
  if (detailsKey) ev[detailsKey] = details;
  ex.events.push(ev);
  return ev;
}
const dataDetails = { truncated: false };

function roleEnv(fn) {
  const roles = JSON.parse(readFileSync(join(rolesDir, 'roles.json'), 'utf8'));
  const r = roles[fn];
  if (!r) throw statesError('States.Runtime', `no role for ${fn} in ${rolesDir}/roles.json`);
  return {
    ...process.env, AWS_ACCESS_KEY_ID: r.AccessKeyId, AWS_SECRET_ACCESS_KEY: r.SecretAccessKey, AWS_SESSION_TOKEN: r.SessionToken,
    AWS_ENDPOINT_URL_SFN: process.env.AWS_ENDPOINT_URL_SFN || selfUrl,
  };
}

// One Lambda invocation: the local invoke program on the function's role, timed and counted.
function invoke(ex, fn, payload) {
  const t0 = Date.now();
  const inv = (ex.invocations[fn] ??= { count: 0, ms: 0 });
  inv.count++;
  let fault = null;
  for (const f of faults) if (f.fn === fn && (!f.execution || f.execution === ex.name) && ++f.seen === f.n) fault ??= f;
  if (fault) faults = faults.filter(f => f !== fault);
  if (warmMax > 0) {
    return warmInvoke(fn, payload).then((out) => {
      inv.ms += Date.now() - t0;
      if (fault) throw statesError('Lambda.Unknown', `Task timed out (injected: invocation ${fault.n} of ${fn}; its work was done, its result lost)`);
      return out;
    }, (e) => { inv.ms += Date.now() - t0; throw e; });
  }
  return new Promise((resolve, reject) => {
    let env;
    try { env = roleEnv(fn); } catch (e) { return reject(e); }
    const p = spawn(invokeBin, [fn], { stdio: ['pipe', 'pipe', 'inherit'], env });
    ex.children.add(p);
    let out = '';
    p.stdout.on('data', d => { out += d; });
    p.on('error', (e) => { ex.children.delete(p); reject(statesError('Lambda.Unknown', `${fn}: ${e.message}`)); });
    p.on('close', code => {
      ex.children.delete(p);
      inv.ms += Date.now() - t0;
      if (fault) {
        return reject(statesError('Lambda.Unknown', `Task timed out (injected: invocation ${fault.n} of ${fn}; its work was done, its result lost)`));
      }
      if (code === 0) {
        try { return resolve(out.trim() === '' ? null : JSON.parse(out)); } catch { return reject(statesError('Lambda.Unknown', `${fn} printed no JSON: ${out.slice(0, 200)}`)); }
      }
      let err;
      try { const d = JSON.parse(out); err = statesError(d.errorType ?? 'Lambda.Unknown', d.errorMessage ?? out); } catch { err = statesError('Lambda.Unknown', `${fn} exited ${code}: ${out.slice(0, 500)}`); }
      reject(err);
    });
    p.stdin.on('error', () => {});
    p.stdin.end(JSON.stringify(payload));
  });
}

// ---- warm pools (--warm N): per function, up to N `--serve` processes, one payload each at a time
const pools = new Map(); // fn → {idle: [worker], all: Set, waiting: [resolve]}
const warmStats = {}; // fn → {started, invocations, waited, exited}
function newWorker(fn, pool) {
  const p = spawn(invokeBin, ['--serve', fn], { stdio: ['pipe', 'pipe', 'inherit'], env: roleEnv(fn) });
  const w = { p, fn, current: null, buf: '', dead: false };
  (warmStats[fn] ??= { started: 0, invocations: 0, waited: 0, exited: 0 }).started++;
  pool.all.add(w);
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (d) => {
    w.buf += d;
    let i;
    while ((i = w.buf.indexOf('\n')) >= 0) {
      const line = w.buf.slice(0, i); w.buf = w.buf.slice(i + 1);
      const cur = w.current; w.current = null;
      if (!cur) continue;
      let ans;
      try { ans = JSON.parse(line); } catch { cur.reject(statesError('Lambda.Unknown', `${fn} answered no JSON: ${line.slice(0, 200)}`)); release(w, pool); continue; }
      if (ans && Object.prototype.hasOwnProperty.call(ans, 'ok')) cur.resolve(ans.ok);
      else cur.reject(statesError(ans?.errorType ?? 'Lambda.Unknown', ans?.errorMessage ?? line));
      release(w, pool);
    }
  });
  const gone = (why) => {
    if (w.dead) return;
    w.dead = true;
    warmStats[fn].exited++;
    pool.all.delete(w);
    pool.idle = pool.idle.filter(x => x !== w);
    if (w.current) { w.current.reject(statesError('Lambda.Unknown', `${fn}: its execution environment ended (${why})`)); w.current = null; }
    // A waiter can now start a fresh environment.
    const next = pool.waiting.shift();
    if (next) next();
  };
  p.on('error', (e) => gone(e.message));
  p.on('close', (code, sig) => gone(`exit ${code ?? sig}`));
  p.stdin.on('error', () => {});
  return w;
}
function release(w, pool) {
  if (w.dead) return;
  const next = pool.waiting.shift();
  if (next) next(w); else pool.idle.push(w);
}
function acquire(fn) {
  const pool = pools.get(fn) ?? (pools.set(fn, { idle: [], all: new Set(), waiting: [] }), pools.get(fn));
  return new Promise((resolve, reject) => {
    const take = (w) => {
      if (w && !w.dead) return resolve(w);
      const idle = pool.idle.pop();
      if (idle) return resolve(idle);
      if (pool.all.size < warmMax) { try { return resolve(newWorker(fn, pool)); } catch (e) { return reject(e); } }
      (warmStats[fn] ??= { started: 0, invocations: 0, waited: 0, exited: 0 }).waited++;
      pool.waiting.push(take);
    };
    take(null);
  });
}
async function warmInvoke(fn, payload) {
  const w = await acquire(fn);
  warmStats[fn].invocations++;
  return new Promise((resolve, reject) => {
    w.current = { resolve, reject };
    w.p.stdin.write(JSON.stringify(payload) + '\n');
  });
}

// Timeout of a Task in ms (TimeoutSeconds / TimeoutSecondsPath on the state input), or null.
function seconds(state, field, input) {
  if (state[field] !== undefined) return state[field];
  if (state[`${field}Path`] !== undefined) {
    const v = query(state[`${field}Path`], input, {});
    if (!Number.isInteger(v) || v < 1) throw statesError('States.Runtime', `${field}Path ${state[`${field}Path`]} must select a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }
  return null;
}

// After the engine's StateEntered for this state has been turned into a history event.
const afterEntered = () => new Promise(r => setImmediate(r));

function lambdaHandler(ex, name, state) {
  const fn = fnOf(state.Resource);
  return async (input) => {
    await afterEntered();
    const timeoutS = seconds(state, 'TimeoutSeconds', input);
    addEvent(ex, 'LambdaFunctionScheduled', 'lambdaFunctionScheduledEventDetails', {
      resource: state.Resource, input: JSON.stringify(input), inputDetails: dataDetails, ...(timeoutS ? { timeoutInSeconds: timeoutS } : {}),
    });
    addEvent(ex, 'LambdaFunctionStarted');
    let timer;
    try {
      const out = await Promise.race([invoke(ex, fn, input), new Promise((_, rej) => {
        if (timeoutS) timer = setTimeout(() => rej(statesError('States.Timeout', `${name} ran past TimeoutSeconds ${timeoutS}`)), timeoutS * secondsMs);
      })]);
      addEvent(ex, 'LambdaFunctionSucceeded', 'lambdaFunctionSucceededEventDetails', { output: JSON.stringify(out), outputDetails: dataDetails });
      return out;
    } catch (e) {
      if (e.name === 'States.Timeout') addEvent(ex, 'LambdaFunctionTimedOut', 'lambdaFunctionTimedOutEventDetails', { error: e.name, cause: e.message });
      else addEvent(ex, 'LambdaFunctionFailed', 'lambdaFunctionFailedEventDetails', { error: e.name, cause: e.message });
      throw e;
    } finally { clearTimeout(timer); }
  };
}

function callbackHandler(ex, name, state) {
  const details = { resourceType: 'lambda', resource: 'invoke.waitForTaskToken' };
  return async (input) => {
    await afterEntered();
    const token = 'AQ' + randomBytes(96).toString('base64');
    const context = {
      Execution: { Id: ex.arn, Name: ex.name, Input: ex.inputJson, StartTime: iso(ex.startMs), RoleArn: `arn:aws:iam::${ACCOUNT}:role/spotfit-sfn` },
      StateMachine: { Id: stateMachineArn, Name: smName },
      State: { Name: name, EnteredTime: iso(Date.now()), RetryCount: ex.retryCount[name] ?? 0 },
      Task: { Token: token },
    };
    const params = template(state.Parameters ?? {}, input, context);
    const timeoutS = seconds(state, 'TimeoutSeconds', input);
    const heartbeatS = seconds(state, 'HeartbeatSeconds', input);
    addEvent(ex, 'TaskScheduled', 'taskScheduledEventDetails', {
      ...details, region: REGION, parameters: JSON.stringify(params),
      ...(timeoutS ? { timeoutInSeconds: timeoutS } : {}), ...(heartbeatS ? { heartbeatInSeconds: heartbeatS } : {}),
    });
    addEvent(ex, 'TaskStarted', 'taskStartedEventDetails', details);
    return await new Promise((resolve, reject) => {
      const task = { token, ex, state: name, open: true, heartbeats: 0, timers: {} };
      const close = () => { task.open = false; clearTimeout(task.timers.timeout); clearTimeout(task.timers.heartbeat); ex.openTasks.delete(task); };
      // A callback that comes while the invoke is still running closes the token at once (a
      // second one finds it gone) and completes the task once the invoke has returned, so the
      // history is always Scheduled, Started, Submitted, Succeeded|Failed.
      let submitted;
      const submittedP = new Promise(r => { submitted = r; });
      task.succeed = (output) => {
        close();
        submittedP.then(() => {
          addEvent(ex, 'TaskSucceeded', 'taskSucceededEventDetails', { ...details, output: JSON.stringify(output), outputDetails: dataDetails });
          resolve(output);
        });
      };
      task.fail = (error, cause, timedOut = false, now = false) => {
        close();
        (timedOut || now ? Promise.resolve() : submittedP).then(() => {
          if (timedOut) addEvent(ex, 'TaskTimedOut', 'taskTimedOutEventDetails', { ...details, error, cause });
          else addEvent(ex, 'TaskFailed', 'taskFailedEventDetails', { ...details, error, cause });
          reject(statesError(error, cause ?? ''));
        });
      };
      task.cancel = () => close(); // the execution ended around it (StopExecution)
      task.heartbeat = () => {
        task.heartbeats++;
        if (heartbeatS) {
          clearTimeout(task.timers.heartbeat);
          task.timers.heartbeat = setTimeout(() => (task.timedOut = true) && task.fail('States.HeartbeatTimeout', `no heartbeat for ${heartbeatS} s`, true), heartbeatS * secondsMs);
        }
      };
      tokens.set(token, task);
      ex.openTasks.add(task);
      ex.tasks.push(task);
      if (timeoutS) task.timers.timeout = setTimeout(() => (task.timedOut = true) && task.fail('States.Timeout', `${name} ran past ${timeoutS} s`, true), timeoutS * secondsMs);
      if (heartbeatS) task.timers.heartbeat = setTimeout(() => (task.timedOut = true) && task.fail('States.HeartbeatTimeout', `no heartbeat for ${heartbeatS} s`, true), heartbeatS * secondsMs);
      // The invoke is synchronous (RequestResponse): its return is TaskSubmitted, and the task
      // waits on. A callback may come before it returns. Its failure fails the task.
      invoke(ex, fnOf(params.FunctionName), params.Payload).then((out) => {
        if (task.timedOut) return;
        addEvent(ex, 'TaskSubmitted', 'taskSubmittedEventDetails', {
          ...details, output: JSON.stringify({ ExecutedVersion: '$LATEST', Payload: out, StatusCode: 200 }), outputDetails: dataDetails,
        });
        submitted();
      }, (e) => {
        if (task.open) task.fail(e.name, e.message, false, true);
        else submitted(); // completed by a callback already: that outcome stands
      });
    });
  };
}

function startEngine(ex) {
  const handlers = {};
  for (const [name, s] of Object.entries(definition.States)) {
    if (s.Type !== 'Task') continue;
    const h = s.Resource === CALLBACK ? callbackHandler(ex, name, s) : lambdaHandler(ex, name, s);
    handlers[name] = async (input) => {
      if (ex.status !== 'RUNNING') return new Promise(() => {}); // ended meanwhile: never settles
      return h(input);
    };
  }
  const sm = new StateMachine(engineDef, { validationOptions: { checkArn: true, checkPaths: true } });
  const run = sm.run(ex.input, {
    overrides: {
      taskResourceLocalHandlers: handlers,
      retryIntervalOverrides: Object.fromEntries(Object.keys(handlers).map(n => [n, retryMs])),
    },
    context: { Execution: { Id: ex.arn, Name: ex.name, StartTime: iso(ex.startMs) }, StateMachine: { Id: stateMachineArn, Name: smName } },
  });
  ex.run = run;
  // Engine events → history events and transitions (in order: the handlers wait a macrotask
  // before writing theirs, so the StateEntered they follow is already here).
  (async () => {
    for await (const e of run.eventLogs) {
      const name = e.state?.name;
      if (e.type === 'StateEntered') {
        ex.transitions++;
        ex.states.push(name);
        ex.retryCount[name] = 0;
        addEvent(ex, `${e.state.type}StateEntered`, 'stateEnteredEventDetails', { name, input: JSON.stringify(e.state.input), inputDetails: dataDetails });
      } else if (e.type === 'StateExited') {
        addEvent(ex, `${e.state.type}StateExited`, 'stateExitedEventDetails', { name, output: JSON.stringify(e.state.output), outputDetails: dataDetails });
      } else if (e.type === 'StateRetried') {
        ex.transitions++;
        ex.retryCount[name] = (ex.retryCount[name] ?? 0) + 1;
      }
    }
  })();
  // A macrotask later, so the engine's last state events are in the history first.
  run.result.then(
    (output) => afterEntered().then(() => finish(ex, 'SUCCEEDED', { output })),
    (err) => afterEntered().then(() => {
      if (err?.name === 'ExecutionAbortedError') return; // StopExecution already closed it
      if (err?.name === 'ExecutionTimeoutError') return finish(ex, 'TIMED_OUT', { error: 'States.Timeout', cause: 'The execution ran past its TimeoutSeconds' });
      const inner = err?.cause ?? err;
      finish(ex, 'FAILED', { error: inner?.name ?? 'States.Runtime', cause: inner?.message ?? String(err) });
    }));
}

function finish(ex, status, { output, error, cause }) {
  if (ex.status !== 'RUNNING') return;
  ex.status = status;
  ex.stopMs = Date.now();
  for (const t of [...ex.openTasks]) t.cancel();
  // A Lambda invocation in flight runs to its end, as on AWS; its result goes nowhere.
  if (status === 'SUCCEEDED') {
    ex.output = JSON.stringify(output);
    addEvent(ex, 'ExecutionSucceeded', 'executionSucceededEventDetails', { output: ex.output, outputDetails: dataDetails });
  } else {
    ex.error = error ?? null; ex.cause = cause ?? null;
    const key = { FAILED: ['ExecutionFailed', 'executionFailedEventDetails'], ABORTED: ['ExecutionAborted', 'executionAbortedEventDetails'], TIMED_OUT: ['ExecutionTimedOut', 'executionTimedOutEventDetails'] }[status];
    const d = {};
    if (error != null) d.error = error;
    if (cause != null) d.cause = cause;
    addEvent(ex, key[0], key[1], d);
  }
  ex.closed = true;
  if (status !== 'SUCCEEDED') putStatusEvent(ex);
}

// The EventBridge event Step Functions sends for a status change (AWS's documented example shape:
// dates in epoch milliseconds, output/error/cause null when absent).
function statusChangeEvent(ex) {
  return {
    version: '0', id: randomUUID(), 'detail-type': 'Step Functions Execution Status Change', source: 'aws.states',
    account: ACCOUNT, time: iso(ex.stopMs ?? Date.now()).replace(/\.\d{3}Z$/, 'Z'), region: REGION, resources: [ex.arn],
    detail: {
      executionArn: ex.arn, stateMachineArn, name: ex.name, status: ex.status, startDate: ex.startMs, stopDate: ex.stopMs ?? null,
      input: ex.inputJson, output: ex.output ?? null, inputDetails: { included: true }, outputDetails: ex.output ? { included: true } : null,
      error: ex.error ?? null, cause: ex.cause ?? null,
    },
  };
}
function putStatusEvent(ex) {
  const event = statusChangeEvent(ex);
  const cmd = process.env.SPOTFIT_PUT_EVENT;
  const rec = { status: ex.status, at: Date.now(), rc: null };
  ex.putEvents.push(rec);
  if (!cmd) { console.error(`local-sfn: SPOTFIT_PUT_EVENT is not set: the ${ex.status} event of ${ex.name} goes nowhere`); rec.rc = 'skipped'; return; }
  const p = spawn(cmd, [], { stdio: ['pipe', 'inherit', 'inherit'], shell: !/^[\w./-]+$/.test(cmd) });
  p.on('error', (e) => { rec.rc = `error: ${e.message}`; });
  p.on('close', (code) => { rec.rc = code; });
  p.stdin.on('error', () => {});
  p.stdin.end(JSON.stringify(event));
}

// ---- the API ----------------------------------------------------------------------------------
class ApiError extends Error { constructor(code, message) { super(message); this.code = code; } }
const need = (b, k) => { if (b[k] === undefined || b[k] === null || b[k] === '') throw new ApiError('ValidationException', `${k} is required`); return b[k]; };
const getExecution = (arn) => {
  if (typeof arn !== 'string' || !arn.startsWith('arn:')) throw new ApiError('InvalidArn', `Invalid Arn: '${arn}'`);
  const ex = executions.get(arn);
  if (!ex) throw new ApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
  return ex;
};
const getTask = (token) => {
  if (typeof token !== 'string' || token === '') throw new ApiError('ValidationException', 'taskToken is required');
  const t = tokens.get(token);
  if (!t) throw new ApiError('InvalidToken', 'Invalid token');
  if (!t.open) throw new ApiError('TaskTimedOut', 'Task Timed Out');
  return t;
};
function recordCallback(op, body, caller) {
  const t = tokens.get(body.taskToken);
  const rec = { op, accessKeyId: caller, at: Date.now(), token_tail: String(body.taskToken ?? '').slice(-8) };
  if (t) t.ex.callbacks.push(rec);
  else unmatchedCallbacks.push(rec);
  return rec;
}
const unmatchedCallbacks = [];
const describe = (ex) => {
  const d = { executionArn: ex.arn, stateMachineArn, name: ex.name, status: ex.status, startDate: epoch(ex.startMs), input: ex.inputJson, inputDetails: { included: true } };
  if (ex.stopMs) d.stopDate = epoch(ex.stopMs);
  if (ex.output !== undefined) { d.output = ex.output; d.outputDetails = { included: true }; }
  if (ex.error != null) d.error = ex.error;
  if (ex.cause != null) d.cause = ex.cause;
  return d;
};
function page(items, body, max = 1000) {
  const n = Math.min(Number(body.maxResults) || 100, max);
  let start = 0;
  if (body.nextToken) {
    const m = /^p(\d+)$/.exec(body.nextToken);
    if (!m) throw new ApiError('InvalidToken', 'Invalid pagination token');
    start = Number(m[1]);
  }
  const out = items.slice(start, start + n);
  return { out, nextToken: start + n < items.length ? `p${start + n}` : undefined };
}

const ops = {
  StartExecution(b) {
    const arn = need(b, 'stateMachineArn');
    if (arn !== stateMachineArn) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    const name = b.name ?? randomUUID();
    if (!/^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]{1,80}$/.test(name)) throw new ApiError('InvalidName', `Invalid Name: '${name}'`);
    const inputJson = b.input ?? '{}';
    let input;
    try { input = JSON.parse(inputJson); } catch { throw new ApiError('InvalidExecutionInput', 'Invalid execution input: not JSON'); }
    const exArn = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${smName}:${name}`;
    const old = executions.get(exArn);
    if (old) {
      if (old.status === 'RUNNING' && old.inputJson === inputJson) return { executionArn: exArn, startDate: epoch(old.startMs) };
      throw new ApiError('ExecutionAlreadyExists', `Execution Already Exists: '${exArn}'`);
    }
    const ex = {
      arn: exArn, name, input, inputJson, status: 'RUNNING', startMs: Date.now(), stopMs: null, events: [], transitions: 0,
      invocations: {}, states: [], retryCount: {}, openTasks: new Set(), tasks: [], children: new Set(), callbacks: [], putEvents: [],
    };
    executions.set(exArn, ex);
    addEvent(ex, 'ExecutionStarted', 'executionStartedEventDetails', { input: inputJson, inputDetails: dataDetails, roleArn: `arn:aws:iam::${ACCOUNT}:role/spotfit-sfn` });
    startEngine(ex);
    return { executionArn: exArn, startDate: epoch(ex.startMs) };
  },
  DescribeExecution(b) { return describe(getExecution(need(b, 'executionArn'))); },
  StopExecution(b) {
    const ex = getExecution(need(b, 'executionArn'));
    if (ex.status === 'RUNNING') {
      finish(ex, 'ABORTED', { error: b.error, cause: b.cause });
      ex.run?.abort();
    }
    return { stopDate: epoch(ex.stopMs) };
  },
  SendTaskSuccess(b, caller) {
    const rec = recordCallback('SendTaskSuccess', b, caller);
    const t = getTaskRecorded(rec, b.taskToken);
    let output;
    if (Buffer.byteLength(b.output ?? '') > MAX_PAYLOAD_BYTES) { rec.result = 'InvalidOutput'; throw new ApiError('InvalidOutput', `Invalid output: more than ${MAX_PAYLOAD_BYTES} bytes`); }
    try { output = JSON.parse(need(b, 'output')); } catch (e) { rec.result = 'InvalidOutput'; throw e instanceof ApiError ? e : new ApiError('InvalidOutput', 'Invalid output: not JSON'); }
    rec.result = 'ok';
    t.succeed(output);
    return {};
  },
  SendTaskFailure(b, caller) {
    const rec = recordCallback('SendTaskFailure', b, caller);
    const t = getTaskRecorded(rec, b.taskToken);
    rec.result = 'ok';
    t.fail(b.error ?? 'States.TaskFailed', b.cause ?? '');
    return {};
  },
  SendTaskHeartbeat(b, caller) {
    const rec = recordCallback('SendTaskHeartbeat', b, caller);
    const t = getTaskRecorded(rec, b.taskToken);
    rec.result = 'ok';
    t.heartbeat();
    return {};
  },
  GetExecutionHistory(b) {
    const ex = getExecution(need(b, 'executionArn'));
    let events = ex.events;
    if (b.includeExecutionData === false) events = events.map(e => JSON.parse(JSON.stringify(e, (k, v) => (['input', 'output', 'parameters'].includes(k) ? undefined : v))));
    if (b.reverseOrder) events = [...events].reverse();
    const { out, nextToken } = page(events, b);
    return nextToken ? { events: out, nextToken } : { events: out };
  },
  ListExecutions(b) {
    if (b.stateMachineArn && b.stateMachineArn !== stateMachineArn) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${b.stateMachineArn}'`);
    const all = [...executions.values()].filter(e => !b.statusFilter || e.status === b.statusFilter).reverse()
      .map(e => ({ executionArn: e.arn, stateMachineArn, name: e.name, status: e.status, startDate: epoch(e.startMs), ...(e.stopMs ? { stopDate: epoch(e.stopMs) } : {}) }));
    const { out, nextToken } = page(all, b);
    return nextToken ? { executions: out, nextToken } : { executions: out };
  },
};
function getTaskRecorded(rec, token) {
  try { return getTask(token); } catch (e) { rec.result = e.code; throw e; }
}

function stats() {
  return {
    executions: [...executions.values()].map(ex => ({
      name: ex.name, arn: ex.arn, status: ex.status, transitions: ex.transitions, events: ex.events.length,
      invocations: ex.invocations, started: ex.startMs, stopped: ex.stopMs, states: ex.states,
      tasks: ex.tasks.map(t => ({ state: t.state, open: t.open, heartbeats: t.heartbeats })),
      callbacks: ex.callbacks, put_events: ex.putEvents,
    })),
    unmatched_callbacks: unmatchedCallbacks,
    seconds_ms: secondsMs,
    warm: warmMax > 0 ? { max_per_function: warmMax, functions: warmStats } : null,
  };
}

const callerOf = (req) => /Credential=([^/,\s]+)/.exec(req.headers.authorization ?? '')?.[1] ?? null;
function send(res, code, obj, extra = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID(), 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}
let selfUrl = '';
const server = createServer((req, res) => {
  let raw = '';
  req.on('data', d => { raw += d; });
  req.on('end', () => {
    try {
      if (req.method === 'GET' && req.url === '/_local/stats') return send(res, 200, stats());
      if (req.method === 'POST' && req.url === '/_local/faults') {
        const b = JSON.parse(raw || '{}');
        if (b.timeout_once) {
          const [fn, n] = String(b.timeout_once).split(':');
          faults.push({ fn, n: Number(n), seen: 0, execution: b.execution ?? null });
        }
        if (b.clear) faults = [];
        return send(res, 200, { faults });
      }
      if (req.method === 'POST' && req.url === '/_local/clock') {
        const b = JSON.parse(raw || '{}');
        if (b.seconds_ms !== undefined) secondsMs = Number(b.seconds_ms);
        return send(res, 200, { seconds_ms: secondsMs });
      }
      if (req.method !== 'POST' || (req.url !== '/' && !req.url.startsWith('/?'))) return send(res, 404, { __type: 'UnknownOperationException', message: `${req.method} ${req.url}` });
      const target = req.headers['x-amz-target'] ?? '';
      const op = target.startsWith('AWSStepFunctions.') ? target.slice('AWSStepFunctions.'.length) : null;
      if (!op || !ops[op]) return send(res, 400, { __type: 'UnknownOperationException', message: `unsupported operation ${target}` }, { 'x-amzn-errortype': 'UnknownOperationException' });
      let body;
      try { body = JSON.parse(raw || '{}'); } catch { return send(res, 400, { __type: 'SerializationException', message: 'body is not JSON' }); }
      return send(res, 200, ops[op](body, callerOf(req)));
    } catch (e) {
      if (e instanceof ApiError) return send(res, 400, { __type: e.code, message: e.message }, { 'x-amzn-errortype': e.code });
      console.error('local-sfn:', e);
      return send(res, 500, { __type: 'InternalFailure', message: String(e?.message ?? e) });
    }
  });
});
server.listen(Number(opt('--port', 0)), '127.0.0.1', () => {
  const { port } = server.address();
  selfUrl = `http://127.0.0.1:${port}`;
  console.log(JSON.stringify({ port }));
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => {
  for (const ex of executions.values()) for (const p of ex.children) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  for (const pool of pools.values()) for (const w of pool.all) { try { w.p.kill('SIGKILL'); } catch { /* gone */ } }
  process.exit(0);
});
