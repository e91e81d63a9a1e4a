// Offline checks of statemachine/spotfit.asl.json: asl-validator on the definition with the
// ${…Arn} placeholders substituted by example ARNs (as the infra does at synth), and every name
// in a Retry/Catch ErrorEquals is either an ASL built-in (States.*, Lambda.*) or one a spotfit
// Lambda really returns (shared/core/src/error_names.rs). Prints "N passed, M failed".
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
  const targets = (s.Catch ?? []).map(c => c.Next);
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
for (const t of ['Launch', 'Check', 'Terminate']) {
  check(`${t}'s Catch goes through CleanUp (terminate)`, def.States[t].Catch[0].Next === 'CleanUp');
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
