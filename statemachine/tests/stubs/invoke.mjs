#!/usr/bin/env node
// A stand-in for spotfit-local-invoke in the local-sfn tests: `invoke.mjs FUNCTION` with the
// payload on stdin, the result (or {errorType, errorMessage} and exit 1) on stdout.
//
// Tiny test machine:
//   work   → the payload with worked+1.
//   await  → the callback arm ({token, state}): state.mode "success" sends SendTaskSuccess itself
//            (the job had already ended); "fail" fails the invoke (errorType Boom); anything else
//            only records the token ($STUB_LOG/tokens.jsonl) for the test to complete.
// The real spotfit.asl.json (canned RunStates from statemachine/fixtures/, steered by
// spec.scenario = {id, wait_s, heartbeat_s, arms: ["succeed"|"silent"…], checks: [status…]}):
//   size-job, launch-instance, check-job (armed or plain), terminate-instance, record-run.
// Every call is appended to $STUB_LOG/calls.jsonl with the access key id it ran with.
import { readFileSync, appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures');
const fixture = (n) => JSON.parse(readFileSync(join(fixtures, n), 'utf8'));
const fn = process.argv[2];
const payload = JSON.parse(readFileSync(0, 'utf8') || 'null');
const log = process.env.STUB_LOG;
const note = (file, obj) => { if (log) appendFileSync(join(log, file), JSON.stringify(obj) + '\n'); };
note('calls.jsonl', { fn, key: process.env.AWS_ACCESS_KEY_ID, token: payload?.token ?? null });

function sfn(op, body) {
  const url = new URL(process.env.AWS_ENDPOINT_URL_SFN);
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname, port: url.port, method: 'POST', path: '/',
      headers: {
        'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AWSStepFunctions.${op}`,
        authorization: `AWS4-HMAC-SHA256 Credential=${process.env.AWS_ACCESS_KEY_ID}/20261126/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0`,
      },
    }, (res) => { let b = ''; res.on('data', d => { b += d; }); res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(b || '{}') })); });
    req.on('error', reject);
    req.end(data);
  });
}
const fail = (type, message) => { process.stdout.write(JSON.stringify({ errorType: type, errorMessage: message })); process.exit(1); };
const next = (scenario, list) => { // the Nth call of this kind in this scenario gets list[N]
  const f = join(log, `${scenario.id}.${list}`);
  const n = existsSync(f) ? Number(readFileSync(f, 'utf8')) : 0;
  writeFileSync(f, String(n + 1));
  const l = scenario[list] ?? [];
  return l[Math.min(n, l.length - 1)];
};

let out;
switch (fn) {
  case 'work': out = { ...payload, worked: (payload.worked ?? 0) + 1 }; break;
  case 'await': {
    const { token, state } = payload;
    if (state.mode === 'fail') fail('Boom', 'the arm failed');
    if (state.mode === 'success') {
      const r = await sfn('SendTaskSuccess', { taskToken: token, output: JSON.stringify({ ...state, done: true }) });
      note('callbacks.jsonl', r);
    } else note('tokens.jsonl', { token, state });
    out = { armed: true };
    break;
  }
  case 'size-job': {
    out = { ...fixture('Size.out.json'), scenario: payload.spec.scenario };
    break;
  }
  case 'launch-instance': {
    const sc = payload.scenario ?? {};
    const l = fixture('Launch.out.json');
    out = { ...l, scenario: sc, instance: { ...l.instance, wait_s: sc.wait_s ?? l.instance.wait_s, heartbeat_s: sc.heartbeat_s ?? l.instance.heartbeat_s } };
    break;
  }
  case 'check-job': {
    if (payload.token) { // armed: the wait is stored; the job may already be over
      const { token, state } = payload;
      const action = next(state.scenario, 'arms');
      if (action === 'succeed') {
        const r = await sfn('SendTaskSuccess', { taskToken: token, output: JSON.stringify({ ...state, check: { status: 'succeeded', at_ms: Date.now() } }) });
        note('callbacks.jsonl', r);
      } else note('tokens.jsonl', { token, scenario: state.scenario.id });
      out = { armed: true, run_id: state.run_id, attempt: state.attempt };
    } else {
      const status = next(payload.scenario, 'checks') ?? 'succeeded';
      // As check-job does: a running attempt gets a fresh wait (seconds left to its deadline).
      out = { ...payload, check: { status, at_ms: Date.now() }, instance: { ...payload.instance, wait_s: payload.scenario.wait_after_check ?? 100 } };
    }
    break;
  }
  case 'terminate-instance': out = { ...payload, instance: { ...payload.instance, terminated_at_ms: Date.now() } }; break;
  case 'record-run': {
    const s = payload.check?.status;
    out = { ...payload, outcome: s === 'succeeded' ? 'succeeded' : s === 'timed_out' ? 'timed_out' : 'failed' };
    break;
  }
  default: fail('Unknown', `no stub for ${fn}`);
}
process.stdout.write(JSON.stringify(out));
