// Offline checks of statemachine/spotfit.asl.json: asl-validator on the definition with the
// ${…Arn} placeholders substituted by example ARNs (as the infra does at synth), and every name
// in a Retry/Catch ErrorEquals is either an ASL built-in (States.*, Lambda.*) or one a spotfit
// Lambda really returns (shared/core/src/error_names.rs), and the event-driven wait of
// docs/callback.md (Launch → Await on a task token → Ended?, timeouts → Check, no Wait state).
// Prints "N passed, M failed".
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const raw = readFileSync(join(here, '..', 'spotfit.asl.json'), 'utf8');
let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); }
};

export const PLACEHOLDERS = ['SizeJobArn', 'LaunchInstanceArn', 'CheckJobArn', 'TerminateInstanceArn', 'RecordRunArn'];
const substituted = raw.replace(/\$\{(\w+)\}/g, (_, n) => `arn:aws:lambda:us-east-1:123456789012:function:spotfit-${n}`);
const unknown = [...raw.matchAll(/\$\{(\w+)\}/g)].map(m => m[1]).filter(n => !PLACEHOLDERS.includes(n));
check('only the documented placeholders are used', unknown.length === 0, unknown.join(','));
check('every placeholder is used', PLACEHOLDERS.every(p => raw.includes('${' + p + '}')));

const dir = mkdtempSync(join(tmpdir(), 'spotfit-asl-'));
const file = join(dir, 'spotfit.asl.json');
writeFileSync(file, substituted);
try {
  const out = execFileSync(join(here, 'node_modules', '.bin', 'asl-validator'), ['--json-path', file], { encoding: 'utf8' });
  check('asl-validator accepts the definition', true, out);
} catch (e) {
  check('asl-validator accepts the definition', false, `${e.stdout}${e.stderr}`);
}

// A broken copy must be rejected: the validator is really looking.
const broken = JSON.parse(substituted);
broken.States.Launch.Next = 'NoSuchState';
writeFileSync(file, JSON.stringify(broken));
try {
  execFileSync(join(here, 'node_modules', '.bin', 'asl-validator'), ['--json-path', file], { stdio: 'pipe' });
  check('asl-validator rejects a dangling Next', false);
} catch { check('asl-validator rejects a dangling Next', true); }

const names = [...readFileSync(join(root, 'shared/core/src/error_names.rs'), 'utf8')
  .matchAll(/pub const [A-Z_]+: &str = "([A-Za-z]+)";/g)].map(m => m[1]);
check('error_names.rs lists names', names.length >= 5, names.join(','));
const def = JSON.parse(substituted);
const used = new Set();
for (const [state, s] of Object.entries(def.States)) {
  for (const r of [...(s.Retry ?? []), ...(s.Catch ?? [])]) for (const e of r.ErrorEquals) used.add(`${state}:${e}`);
}
for (const u of used) {
  const e = u.split(':')[1];
  const ok = e.startsWith('States.') || e.startsWith('Lambda.') || names.includes(e);
  check(`ErrorEquals ${u} is returned by a Lambda or built in`, ok);
}
// Every Task state after Size reaches termination on error.
for (const [state, s] of Object.entries(def.States)) {
  if (s.Type !== 'Task' || state === 'Size') continue;
  // Await's one exception: its timeouts fall back to Check (which itself catches into CleanUp).
  const targets = (s.Catch ?? []).filter(c => !(state === 'Await' && c.Next === 'Check')).map(c => c.Next);
  const ok = targets.length > 0 && targets.every(t => ['CleanUp', 'Failed'].includes(t));
  check(`${state} catches every error`, ok && (s.Catch ?? []).some(c => c.ErrorEquals.includes('States.ALL')));
}
// A Lambda timeout, crash or throttle reaches the state machine as one of these (AWS's "Handle
// Lambda service exceptions"); each Task retries all of them with backoff, so one lost
// invocation never ends a healthy job.
const LAMBDA_TRANSIENT = ['Lambda.Unknown', 'Lambda.ClientExecutionTimeoutException', 'Lambda.ServiceException',
  'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'];
for (const [state, s] of Object.entries(def.States)) {
  if (s.Type !== 'Task') continue;
  const missing = LAMBDA_TRANSIENT.filter(e => !(s.Retry ?? []).some(r => r.ErrorEquals.includes(e) && r.MaxAttempts >= 2 && (r.BackoffRate ?? 1) > 1));
  check(`${state} retries every transient Lambda error with backoff`, missing.length === 0, missing.join(','));
}
check('Launch retries a spent time budget and waits for quota', ['LaunchBudgetSpent', 'WaitingForQuota']
  .every(e => def.States.Launch.Retry.some(r => r.ErrorEquals.includes(e))));
for (const t of ['Launch', 'Await', 'Check', 'Terminate']) {
  const all = def.States[t].Catch.find(c => c.ErrorEquals.includes('States.ALL'));
  check(`${t}'s Catch goes through CleanUp (terminate)`, all?.Next === 'CleanUp');
}

// Event-driven completion (docs/callback.md): Launch → Await (a task token) → Ended?; the
// deadline or a lost heartbeat falls back to one Check; no Wait state, no polling loop.
const S = def.States;
const rawDef = JSON.parse(raw);
check('no Wait state anywhere (nothing polls)', Object.values(S).every(s => s.Type !== 'Wait'),
  Object.entries(S).filter(([, s]) => s.Type === 'Wait').map(([n]) => n).join(','));
check('the states are exactly the contract\'s', JSON.stringify(Object.keys(S).sort()) === JSON.stringify(
  ['Await', 'Check', 'CleanUp', 'Ended?', 'Failed', 'JobFailed', 'JobTimedOut', 'Launch', 'Outcome', 'Record',
    'RecordFailure', 'Resize', 'RetriesExhausted', 'Size', 'SizeFailed', 'Succeeded', 'Terminate'].sort()), Object.keys(S).join(','));
check('Launch → Await', S.Launch.Next === 'Await');
const A = S.Await ?? {};
const AR = rawDef.States.Await ?? {};
check('Await is a Task on lambda:invoke.waitForTaskToken', A.Type === 'Task' && A.Resource === 'arn:aws:states:::lambda:invoke.waitForTaskToken', A.Resource);
check('Await invokes check-job (${CheckJobArn})', AR.Parameters?.FunctionName === '${CheckJobArn}', JSON.stringify(AR.Parameters));
check('Await\'s payload is {token: $$.Task.Token, state: $}', JSON.stringify(A.Parameters?.Payload) === JSON.stringify({ 'token.$': '$$.Task.Token', 'state.$': '$' }),
  JSON.stringify(A.Parameters?.Payload));
check('Await\'s Parameters hold nothing else', JSON.stringify(Object.keys(A.Parameters ?? {}).sort()) === '["FunctionName","Payload"]');
check('the task token reaches only Await\'s payload', (raw.match(/\$\$\.Task\.Token/g) ?? []).length === 1);
check('Await times out at the attempt\'s deadline ($.instance.wait_s)', A.TimeoutSecondsPath === '$.instance.wait_s' && A.TimeoutSeconds === undefined);
check('Await\'s heartbeat is $.instance.heartbeat_s', A.HeartbeatSecondsPath === '$.instance.heartbeat_s' && A.HeartbeatSeconds === undefined);
check('Await keeps the default ResultPath/OutputPath (the callback\'s RunState replaces the state)',
  A.ResultPath === undefined && A.OutputPath === undefined && A.ResultSelector === undefined);
const [c0, c1, ...cRest] = A.Catch ?? [];
check('Await: States.Timeout and States.HeartbeatTimeout → Check, state kept (ResultPath null)',
  c0 && JSON.stringify([...c0.ErrorEquals].sort()) === '["States.HeartbeatTimeout","States.Timeout"]' && c0.ResultPath === null && c0.Next === 'Check',
  JSON.stringify(c0));
check('Await: every other error → CleanUp with $.error', c1 && JSON.stringify(c1.ErrorEquals) === '["States.ALL"]' && c1.ResultPath === '$.error' && c1.Next === 'CleanUp' && cRest.length === 0,
  JSON.stringify(c1));
check('Await retries exactly what the other Lambda Tasks retry', JSON.stringify(A.Retry) === JSON.stringify(S.Check.Retry));
check('no Retry on Await matches a timeout (a timeout is the fallback, not a retry)', (A.Retry ?? []).every(r =>
  !r.ErrorEquals.some(e => ['States.Timeout', 'States.HeartbeatTimeout', 'States.ALL', 'States.TaskFailed'].includes(e))));
check('Await → Ended?', A.Next === 'Ended?' && !A.End);
check('Check is the plain check-job on the whole state', rawDef.States.Check.Resource === '${CheckJobArn}' && S.Check.Parameters === undefined && S.Check.ResultPath === undefined);
check('Check → Ended?', S.Check.Next === 'Ended?');
const E = S['Ended?'];
check('Ended?: running → Await', E.Type === 'Choice' && E.Choices.length === 1 && E.Choices[0].Variable === '$.check.status'
  && E.Choices[0].StringEquals === 'running' && E.Choices[0].Next === 'Await');
check('Ended?: anything else → Terminate', E.Default === 'Terminate');
// Every cycle of the graph passes through Await: with Await removed the graph is acyclic, so no
// loop can spin (and bill transitions) without waiting on a token.
const succ = (s) => [s.Next, s.Default, ...(s.Choices ?? []).map(c => c.Next), ...(s.Catch ?? []).map(c => c.Next)].filter(Boolean);
const cyclic = (() => {
  const color = {};
  const visit = (n) => {
    if (n === 'Await') return false;
    if (color[n] === 1) return true;
    if (color[n] === 2) return false;
    color[n] = 1;
    const r = succ(S[n]).some(visit);
    color[n] = 2;
    return r;
  };
  return Object.keys(S).some(visit);
})();
check('every loop passes through Await (nothing spins without a token)', !cyclic);
// The fixtures that reach Await carry the two integers its paths read.
const fixturesDir = join(here, '..', 'fixtures');
const instanceOf = (f) => { const d = JSON.parse(readFileSync(join(fixturesDir, f), 'utf8')); return (d.previous ?? d).instance; };
for (const f of ['Launch.out.json', 'Launch.attempt2.out.json', 'Check.running.out.json', 'Check.interrupted.out.json',
  'Check.succeeded.out.json', 'Terminate.out.json', 'Record.retry.out.json', 'Record.succeeded.out.json', 'Resize.in.json']) {
  const i = instanceOf(f) ?? {};
  check(`${f}: instance.wait_s is an integer ≥ 1 within the attempt`, Number.isInteger(i.wait_s) && i.wait_s >= 1
    && i.wait_s * 1000 <= i.deadline_ms - i.launched_at_ms, `${i.wait_s}`);
  check(`${f}: instance.heartbeat_s is an integer ≥ 1`, Number.isInteger(i.heartbeat_s) && i.heartbeat_s >= 1, `${i.heartbeat_s}`);
}
check('a running check carries a fresh wait (less than the launch\'s)', instanceOf('Check.running.out.json').wait_s < instanceOf('Launch.out.json').wait_s);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
