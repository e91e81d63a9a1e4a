// Executes statemachine/spotfit.asl.json with aws-local-stepfunctions (Node >= 22). Every Task
// state is served by the real Rust handler: `spotfit-local-invoke FUNCTION` (payload on stdin),
// chosen by the function name in the state's Resource. A handler error is thrown with its
// errorType as the error name, so Retry/Catch match exactly as on AWS.
//
//   node run-execution.mjs INPUT.json EXECUTION_NAME [--abort-after-checks N] [--poll-ms MS]
//                          [--timeout-once FUNCTION:N]
//
// Each handler runs with the STS credentials of its own role (SPOTFIT_ROLES_DIR/roles.json, written
// by `scripts/local-stack iam`), never the caller's. --timeout-once makes the Nth invocation of
// FUNCTION do its work and then be lost as a Lambda timeout is (Lambda.Unknown, result dropped),
// so the ASL's Retry and the handler's idempotency are what recover.
//
// Prints one JSON line: {"status": "SUCCEEDED"|"FAILED"|"ABORTED", "output"|"error", "states", "ms"}.
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateMachine } from 'aws-local-stepfunctions';

const here = dirname(fileURLToPath(import.meta.url));
const [inputFile, executionName, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => { const i = rest.indexOf(name); return i >= 0 ? Number(rest[i + 1]) : dflt; };
const abortAfterChecks = opt('--abort-after-checks', 0);
const pollMs = opt('--poll-ms', 1000);
const invokeBin = process.env.SPOTFIT_LOCAL_INVOKE;
if (!invokeBin) { console.error('SPOTFIT_LOCAL_INVOKE is not set'); process.exit(2); }
const rolesDir = process.env.SPOTFIT_ROLES_DIR;
if (!rolesDir) { console.error('SPOTFIT_ROLES_DIR is not set: every Task must run on its role\'s credentials'); process.exit(2); }
const roles = JSON.parse(readFileSync(join(rolesDir, 'roles.json'), 'utf8'));
const timeoutOnce = (() => { const i = rest.indexOf('--timeout-once'); if (i < 0) return null; const [fn, n] = rest[i + 1].split(':'); return { fn, n: Number(n) }; })();
const calls = {};

const FUNCTIONS = {
  SizeJobArn: 'size-job', LaunchInstanceArn: 'launch-instance', CheckJobArn: 'check-job',
  TerminateInstanceArn: 'terminate-instance', RecordRunArn: 'record-run',
};
const raw = readFileSync(join(here, '..', 'spotfit.asl.json'), 'utf8');
const definition = JSON.parse(raw.replace(/\$\{(\w+)\}/g,
  (_, n) => `arn:aws:lambda:us-east-1:123456789012:function:${FUNCTIONS[n]}`));

function roleEnv(fn) {
  const r = roles[fn];
  if (!r) throw new Error(`no role for ${fn} in ${rolesDir}/roles.json`);
  return { ...process.env, AWS_ACCESS_KEY_ID: r.AccessKeyId, AWS_SECRET_ACCESS_KEY: r.SecretAccessKey, AWS_SESSION_TOKEN: r.SessionToken };
}

function invoke(fn, payload) {
  return new Promise((resolve, reject) => {
    const p = spawn(invokeBin, [fn], { stdio: ['pipe', 'pipe', 'inherit'], env: roleEnv(fn) });
    let out = '';
    p.stdout.on('data', d => { out += d; });
    p.on('error', reject);
    p.on('close', code => {
      if (code === 0) return resolve(JSON.parse(out));
      let err;
      try { const d = JSON.parse(out); err = new Error(d.errorMessage); err.name = d.errorType; }
      catch { err = new Error(`${fn} exited ${code}: ${out}`); err.name = 'Lambda.Unknown'; }
      reject(err);
    });
    p.stdin.end(JSON.stringify(payload));
  });
}

const states = [];
let checks = 0;
let execution;
const handlers = {};
for (const [name, s] of Object.entries(definition.States)) {
  if (s.Type !== 'Task') continue;
  const fn = s.Resource.split(':function:')[1];
  handlers[name] = async (input) => {
    states.push(name);
    const out = await invoke(fn, input);
    calls[fn] = (calls[fn] ?? 0) + 1;
    if (timeoutOnce && timeoutOnce.fn === fn && calls[fn] === timeoutOnce.n) {
      states.push(`${name}:timed-out`);
      const err = new Error(`Task timed out (injected: invocation ${calls[fn]} of ${fn}; its work was done, its result lost)`);
      err.name = 'Lambda.Unknown';
      throw err;
    }
    if (fn === 'check-job' && ++checks === abortAfterChecks) setTimeout(() => execution.abort(), 0);
    return out;
  };
}

const input = JSON.parse(readFileSync(inputFile, 'utf8'));
const sm = new StateMachine(definition, { validationOptions: { checkArn: true, checkPaths: true } });
const t0 = Date.now();
execution = sm.run(input, {
  overrides: {
    taskResourceLocalHandlers: handlers,
    waitTimeOverrides: { WaitForJob: pollMs },
    retryIntervalOverrides: Object.fromEntries(Object.keys(handlers).map(n => [n, 200])),
  },
  context: { Execution: { Name: executionName, Input: input, StartTime: new Date().toISOString() } },
});
try {
  const output = await execution.result;
  console.log(JSON.stringify({ status: 'SUCCEEDED', output, states, ms: Date.now() - t0 }));
} catch (e) {
  const status = e.name === 'ExecutionAbortedError' ? 'ABORTED' : 'FAILED';
  const inner = e.cause ?? e;
  console.log(JSON.stringify({ status, error: inner.name, cause: inner.message, states, ms: Date.now() - t0 }));
}
