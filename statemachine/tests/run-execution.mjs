// Runs one execution of statemachine/spotfit.asl.json on the local Step Functions service
// (local-sfn.mjs) and prints how it ended. A thin client: StartExecution, DescribeExecution every
// 100 ms until the end, GetExecutionHistory for the states entered and the event count.
//
//   node run-execution.mjs INPUT.json EXECUTION_NAME [--stop-after-state STATE:N]
//                          [--timeout-once FUNCTION:N]
//
// AWS_ENDPOINT_URL_SFN: the service. When unset, a service is started for this one run (it needs
// SPOTFIT_LOCAL_INVOKE and SPOTFIT_ROLES_DIR, as local-sfn.mjs does) and stopped after it.
// --stop-after-state Await:1 calls StopExecution (cause "test stop") once the execution has
// entered that state N times. --timeout-once makes the Nth invocation of FUNCTION in this
// execution do its work and then be lost as a Lambda timeout is (Lambda.Unknown).
// --abort-after-checks N (old name) is --stop-after-state Await:N.
//
// Prints one JSON line: {"status", "output"|"error"+"cause", "states" (Task invocations in order,
// as before), "entered" (every state entered), "ms", "transitions", "events", "invocations"}.
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const [inputFile, executionName, ...rest] = process.argv.slice(2);
if (!inputFile || !executionName) { console.error('usage: run-execution.mjs INPUT.json EXECUTION_NAME [--stop-after-state STATE:N] [--timeout-once FUNCTION:N]'); process.exit(2); }
const flag = (name) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined; };
let stopAfter = flag('--stop-after-state');
if (!stopAfter && flag('--abort-after-checks')) stopAfter = `Await:${flag('--abort-after-checks')}`;
const [stopState, stopN] = stopAfter ? [stopAfter.split(':')[0], Number(stopAfter.split(':')[1])] : [null, 0];
const timeoutOnce = flag('--timeout-once');
const STATE_MACHINE = process.env.SPOTFIT_STATE_MACHINE_ARN ?? 'arn:aws:states:us-east-1:123456789012:stateMachine:spotfit';

let endpoint = process.env.AWS_ENDPOINT_URL_SFN;
let service = null;
if (!endpoint) {
  service = spawn(process.execPath, [join(here, 'local-sfn.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: service.stdout }).once('line', resolve);
    service.once('exit', (code) => reject(new Error(`local-sfn.mjs exited ${code}`)));
  });
  endpoint = `http://127.0.0.1:${JSON.parse(line).port}`;
}
const stopService = () => { if (service) service.kill('SIGTERM'); };

async function sfn(op, body) {
  const r = await fetch(endpoint.replace(/\/$/, '') + '/', {
    method: 'POST',
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AWSStepFunctions.${op}` },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  if (r.status !== 200) { const e = new Error(`${op}: ${j.__type}: ${j.message}`); e.code = j.__type; throw e; }
  return j;
}
async function history(executionArn) {
  const events = [];
  let nextToken;
  do {
    const page = await sfn('GetExecutionHistory', { executionArn, maxResults: 1000, ...(nextToken ? { nextToken } : {}) });
    events.push(...page.events);
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}
const entered = (events) => events.filter(e => e.type.endsWith('StateEntered')).map(e => e.stateEnteredEventDetails.name);
// As before this was a client: one entry per Task invocation (a retry repeats the state's name),
// and "STATE:timed-out" after an invocation lost by --timeout-once.
function taskStates(events) {
  const out = [];
  let current = null;
  for (const e of events) {
    if (e.type.endsWith('StateEntered')) current = e.stateEnteredEventDetails.name;
    else if (e.type === 'LambdaFunctionScheduled' || e.type === 'TaskScheduled') out.push(current);
    else if ((e.type === 'LambdaFunctionFailed' || e.type === 'TaskFailed')
      && String((e.lambdaFunctionFailedEventDetails ?? e.taskFailedEventDetails)?.cause).includes('(injected:')) out.push(`${current}:timed-out`);
  }
  return out;
}

try {
  const input = readFileSync(inputFile, 'utf8');
  if (timeoutOnce) {
    await fetch(endpoint.replace(/\/$/, '') + '/_local/faults', { method: 'POST', body: JSON.stringify({ timeout_once: timeoutOnce, execution: executionName }) });
  }
  const t0 = Date.now();
  const { executionArn } = await sfn('StartExecution', { stateMachineArn: STATE_MACHINE, name: executionName, input });
  let d;
  let stopped = false;
  for (;;) {
    d = await sfn('DescribeExecution', { executionArn });
    if (d.status !== 'RUNNING') break;
    if (stopState && !stopped && entered(await history(executionArn)).filter(n => n === stopState).length >= stopN) {
      await sfn('StopExecution', { executionArn, cause: 'test stop' });
      stopped = true;
      continue;
    }
    await new Promise(r => setTimeout(r, 100));
  }
  const events = await history(executionArn);
  const stats = await fetch(endpoint.replace(/\/$/, '') + '/_local/stats').then(r => r.json()).catch(() => null);
  const mine = stats?.executions?.find(e => e.arn === executionArn);
  const out = { status: d.status, executionArn };
  if (d.status === 'SUCCEEDED') out.output = JSON.parse(d.output);
  else { out.error = d.error ?? null; out.cause = d.cause ?? null; }
  Object.assign(out, {
    states: taskStates(events), entered: entered(events), ms: Date.now() - t0,
    transitions: mine?.transitions ?? null, events: events.length, invocations: mine?.invocations ?? null,
  });
  console.log(JSON.stringify(out));
} finally {
  stopService();
}
