// Shared by the assertion tests: synthesize the stack in-process with test context, and walk
// the IAM statements of the template together with the role each one is attached to.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { defaultStateMachineFile, loadConfig, repoRoot } from '../lib/config';
import { SpotfitStack } from '../lib/spotfit-stack';

export const TEST_CONTEXT: Record<string, unknown> = {
  'spotfit:lambdaCode': 'placeholder',
  'spotfit:vpcId': 'vpc-0123456789abcdef0',
  'spotfit:subnets': { 'use1-az1': 'subnet-0123456789abcdef0', 'use1-az2': 'subnet-0123456789abcdef1' },
};

export function synth(extra: Record<string, unknown> = {}): { stack: SpotfitStack; template: Template; json: Tpl } {
  const app = new App({ context: { ...TEST_CONTEXT, ...extra } });
  const stack = new SpotfitStack(app, 'Spotfit', { config: loadConfig(app.node) });
  const template = Template.fromStack(stack);
  return { stack, template, json: template.toJSON() as Tpl };
}

export interface Tpl {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }>;
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export interface AttachedStatement {
  /** Logical id of the policy (or key) holding the statement. */
  readonly holder: string;
  /** Logical ids of the roles the statement applies to (empty for resource policies). */
  readonly roles: string[];
  readonly kind: 'identity' | 'key' | 'bucket';
  readonly statement: Statement;
}

export const asArray = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

export function statements(t: Tpl): AttachedStatement[] {
  const out: AttachedStatement[] = [];
  for (const [id, r] of Object.entries(t.Resources)) {
    const p = r.Properties ?? {};
    if (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') {
      const roles = asArray(p.Roles as { Ref: string }[]).map((x) => x.Ref);
      for (const s of asArray((p.PolicyDocument as { Statement: Statement[] }).Statement)) {
        out.push({ holder: id, roles, kind: 'identity', statement: s });
      }
    } else if (r.Type === 'AWS::IAM::Role') {
      for (const pol of asArray(p.Policies as { PolicyDocument: { Statement: Statement[] } }[])) {
        for (const s of asArray(pol.PolicyDocument.Statement)) out.push({ holder: id, roles: [id], kind: 'identity', statement: s });
      }
    } else if (r.Type === 'AWS::KMS::Key') {
      for (const s of asArray((p.KeyPolicy as { Statement: Statement[] }).Statement)) {
        out.push({ holder: id, roles: [], kind: 'key', statement: s });
      }
    } else if (r.Type === 'AWS::S3::BucketPolicy') {
      for (const s of asArray((p.PolicyDocument as { Statement: Statement[] }).Statement)) {
        out.push({ holder: id, roles: [], kind: 'bucket', statement: s });
      }
    }
  }
  return out;
}

/** Logical id of the role a Lambda function runs as. */
export function functionRole(t: Tpl, fnLogicalId: string): string {
  const role = t.Resources[fnLogicalId].Properties?.Role as { 'Fn::GetAtt': [string, string] };
  return role['Fn::GetAtt'][0];
}

export function resourcesOfType(t: Tpl, type: string): [string, Record<string, unknown>][] {
  return Object.entries(t.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

/** Renders an Fn::Join / Ref / GetAtt structure as a readable string, for pattern checks. */
export function render(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(render).join(',');
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map(render).join(sep);
    }
    if ('Ref' in o) return `{${o.Ref as string}}`;
    if ('Fn::GetAtt' in o) return `{${(o['Fn::GetAtt'] as string[]).join('.')}}`;
  }
  return JSON.stringify(v);
}

/**
 * The state machine with the Await state of docs/callback.md, for synthesizing the stack against
 * the contract before statemachine/spotfit.asl.json has it: the real file when it already has an
 * Await state, else a copy (in a temporary directory, never in the repository) in which Launch
 * goes to Await, the poll loop (WaitForJob → Check) becomes Await, and Check is the fallback of an
 * Await timeout. Returns the file's path.
 */
export function awaitAsl(): string {
  const file = defaultStateMachineFile(repoRoot());
  const text = fs.readFileSync(file, 'utf8');
  const doc = JSON.parse(text);
  if (doc.States.Await) return file;
  const st = doc.States as Record<string, any>;
  const check = st.Check;
  st.Launch.Next = 'Await';
  delete st.WaitForJob;
  st.Await = {
    Type: 'Task',
    Comment: 'Wait for the attempt to end: check-job arms the wait with the task token; job-events or the sweep sends the checked state.',
    Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
    Parameters: { FunctionName: '${CheckJobArn}', Payload: { 'token.$': '$$.Task.Token', 'state.$': '$' } },
    TimeoutSecondsPath: '$.instance.wait_s',
    HeartbeatSecondsPath: '$.instance.heartbeat_s',
    Retry: check.Retry,
    Catch: [{ ErrorEquals: ['States.Timeout', 'States.HeartbeatTimeout'], ResultPath: null, Next: 'Check' }, ...check.Catch],
    Next: 'Ended?',
  };
  for (const c of st['Ended?'].Choices) if (c.Next === 'WaitForJob') c.Next = 'Await';
  if (st['Ended?'].Default === 'WaitForJob') st['Ended?'].Default = 'Await';
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spotfit-asl-')), 'spotfit.asl.json');
  fs.writeFileSync(out, JSON.stringify(doc, null, 2));
  return out;
}
