// The checked-in schedule: one EventBridge rule per job in infra/jobs.json. The spec is passed
// unchanged as the state machine input, so the state machine (size-job) is what validates it
// fully; here we check only what would make a broken rule or a silently different job.
import * as fs from 'fs';

export interface ScheduledJob {
  /** The job's profile key; must equal spec.name. */
  readonly name: string;
  /** An EventBridge schedule expression: `cron(...)` or `rate(...)`, UTC. */
  readonly schedule: string;
  /** Defaults to true; false keeps the rule but disables it. */
  readonly enabled: boolean;
  readonly description?: string;
  /** The job spec (JobSpec in shared/core/src/spec.rs), the execution input. */
  readonly spec: Record<string, unknown>;
}

const NAME = /^[a-z0-9._-]{1,64}$/;
const CRON = /^cron\((\S+ ){5}\S+\)$/;
const RATE = /^rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\)$/;

export function loadJobs(file: string): ScheduledJob[] {
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const jobs = (doc as { jobs?: unknown }).jobs;
  if (!Array.isArray(jobs)) throw new Error(`${file}: top level must be {"jobs": [...]}`);
  const seen = new Set<string>();
  return jobs.map((j: unknown, i: number) => {
    const where = `${file}: jobs[${i}]`;
    if (typeof j !== 'object' || j === null) throw new Error(`${where}: must be an object`);
    const o = j as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['name', 'schedule', 'enabled', 'description', 'spec'].includes(k)) throw new Error(`${where}.${k}: unknown field`);
    }
    const name = o.name;
    if (typeof name !== 'string' || !NAME.test(name)) throw new Error(`${where}.name: 1-64 of [a-z0-9._-]`);
    if (seen.has(name)) throw new Error(`${where}.name: duplicate job ${name}`);
    seen.add(name);
    const schedule = o.schedule;
    if (typeof schedule !== 'string' || !(CRON.test(schedule) || RATE.test(schedule))) {
      throw new Error(`${where}.schedule: must be cron(m h dom mon dow y) or rate(N unit), got ${JSON.stringify(schedule)}`);
    }
    if (o.enabled !== undefined && typeof o.enabled !== 'boolean') throw new Error(`${where}.enabled: must be true or false`);
    if (o.description !== undefined && typeof o.description !== 'string') throw new Error(`${where}.description: must be a string`);
    const spec = o.spec;
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new Error(`${where}.spec: must be a job spec object`);
    const s = spec as Record<string, unknown>;
    if (s.name !== name) throw new Error(`${where}.spec.name: must equal the job name ${name}`);
    const hasCommand = Array.isArray(s.command) && s.command.length > 0 && s.command.every((a) => typeof a === 'string');
    if (!hasCommand && typeof s.image !== 'string') throw new Error(`${where}.spec.command: an argv array (or an image) is required`);
    // EventBridge caps a target's constant input at 8192 characters.
    if (JSON.stringify(spec).length > 8192) throw new Error(`${where}.spec: longer than EventBridge's 8192-character input`);
    return {
      name,
      schedule,
      enabled: o.enabled === undefined ? true : (o.enabled as boolean),
      description: o.description as string | undefined,
      spec: s,
    };
  });
}
