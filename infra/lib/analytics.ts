// Athena over the bucket: a Glue database, tables with partition projection (no crawler, no
// partition maintenance), a workgroup with a result location and a scan cap, and the named
// queries from infra/athena/*.sql (the same files the DuckDB check runs locally).
//
// Layout and projection (see docs/notes/infra.md for the reasoning):
// - samples  samples/job=<job>/dt=<day>/run=<run_id>/part-<n>.ndjson.gz
//            job: injected (jobs are created ad hoc, so no enum can list them, and a job filter
//            is then mandatory: the one big table can never be scanned whole by accident);
//            dt: date range. The run=… level below dt is read as part of the dt partition.
// - runs     runs/job=<job>/dt=<day>/<run_id>.json (RunSummary). The .exit markers live in the
//            same folder and Hive tables cannot filter by file name, so queries on this table
//            add "$path" LIKE '%.json' (the named queries use run_records instead).
// - run_records records/dt=<day>/<run_id>-<attempt>.json (RunRecord, written by record-run):
//            partitioned by day only, because its questions are across jobs (cost per job per
//            day, interruptions per pool) and the job is a column of the record.
// - profiles_export exports/profiles/AWSDynamoDB/<export-id>/data/*.json.gz (DynamoDB export).
import * as fs from 'fs';
import * as path from 'path';
import { Aws, CfnResource, Stack } from 'aws-cdk-lib';
import * as athena from 'aws-cdk-lib/aws-athena';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

const JSON_SERDE = 'org.openx.data.jsonserde.JsonSerDe';
const TEXT_INPUT = 'org.apache.hadoop.mapred.TextInputFormat';
const TEXT_OUTPUT = 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat';

const GPU = 'struct<index:int,util_pct:double,mem_used_bytes:bigint,mem_total_bytes:bigint,proc_mem_bytes:bigint>';

/** Columns of shared/core/src/sample.rs `Sample` (u64 → bigint). */
export const SAMPLE_COLUMNS: [string, string][] = [
  ['ts_ms', 'bigint'],
  ['run_id', 'string'],
  ['seq', 'bigint'],
  ['interval_s', 'double'],
  ['cpu_cores', 'double'],
  ['host_cpu_cores', 'double'],
  ['processes', 'int'],
  ['mem_bytes', 'bigint'],
  ['mem_metric', 'string'],
  ['rss_bytes', 'bigint'],
  ['pss_bytes', 'bigint'],
  ['cgroup_mem_bytes', 'bigint'],
  ['cgroup_working_set_bytes', 'bigint'],
  ['cgroup_mem_limit_bytes', 'bigint'],
  ['oom_kills', 'bigint'],
  ['mem_limit_hits', 'bigint'],
  ['cpu_throttled_s', 'double'],
  ['page_faults_minor', 'bigint'],
  ['page_faults_major', 'bigint'],
  ['disk_read_bytes', 'bigint'],
  ['disk_write_bytes', 'bigint'],
  ['net_rx_bytes', 'bigint'],
  ['net_tx_bytes', 'bigint'],
  ['gpus', `array<${GPU}>`],
];

const CPU_STATS = 'struct<avg:double,p50:double,p95:double,max:double>';
const GPU_STATS = 'struct<count:int,util_avg_pct:double,util_max_pct:double,mem_max_bytes:bigint>';
const IO = 'struct<disk_read_bytes:bigint,disk_write_bytes:bigint,net_rx_bytes:bigint,net_tx_bytes:bigint>';
const EXIT = 'struct<code:int,signal:int>';

/** shared/core/src/summary.rs `RunSummary`, without `job` (the partition key of `runs`). */
const SUMMARY_FIELDS: [string, string][] = [
  ['run_id', 'string'],
  ['started_at_ms', 'bigint'],
  ['ended_at_ms', 'bigint'],
  ['duration_s', 'double'],
  ['samples', 'bigint'],
  ['cpu', CPU_STATS],
  ['mem_max_bytes', 'bigint'],
  ['mem_metric', 'string'],
  ['gpu', GPU_STATS],
  ['io', IO],
  ['exit', EXIT],
  ['oom_killed', 'boolean'],
  ['status', 'string'],
  ['cpu_given_cores', 'double'],
  ['cpu_throttled', 'boolean'],
  ['input_bytes', 'bigint'],
  ['stdout_tail', 'string'],
  ['stderr_tail', 'string'],
  ['disk_used_max_bytes', 'bigint'],
];
export const RUN_COLUMNS = SUMMARY_FIELDS;

const SUMMARY_STRUCT = `struct<job:string,${SUMMARY_FIELDS.map(([n, t]) => `${n}:${t}`).join(',')}>`;
const PLACED_STRUCT =
  'struct<instance_id:string,instance_type:string,region:string,az:string,market:string,price_per_hour:double,local:boolean,storage_per_hour:double>';

/** shared/core/src/run.rs `RunRecord`. Checked against infra/athena/schema.json (written from the Rust types by shared/core/tests/athena_contract.rs) in infra/test/contract.test.ts. */
export const RECORD_COLUMNS: [string, string][] = [
  ['run_id', 'string'],
  ['job', 'string'],
  ['attempt', 'int'],
  ['status', 'string'],
  ['placed', PLACED_STRUCT],
  ['cost_usd', 'double'],
  ['cost_basis', 'string'],
  ['summary', SUMMARY_STRUCT],
  ['requested_vcpu', 'int'],
  ['requested_memory_bytes', 'bigint'],
  ['heartbeat_ms', 'bigint'],
];

/** First day the date projection covers. */
const FIRST_DAY = '2024-01-01';

export interface AnalyticsProps {
  readonly bucket: s3.IBucket;
  /** Directory of the named-query SQL files. */
  readonly queryDir: string;
}

export class Analytics extends Construct {
  readonly database: glue.CfnDatabase;
  readonly workgroup: athena.CfnWorkGroup;
  readonly databaseName: string;

  constructor(scope: Construct, id: string, props: AnalyticsProps) {
    super(scope, id);
    const bucket = props.bucket;
    this.databaseName = 'spotfit';
    this.database = new glue.CfnDatabase(this, 'Database', {
      catalogId: Aws.ACCOUNT_ID,
      databaseInput: { name: this.databaseName, description: 'spotfit usage samples, run summaries and run records' },
    });

    const s3url = (prefix: string) => `s3://${bucket.bucketName}/${prefix}`;
    // Hive layout <prefix>/[job=<job>/]dt=<day>/…: job injected (when present), day projected.
    const projected = (prefix: string, withJob: boolean, extra: Record<string, string> = {}) => ({
      location: s3url(prefix),
      partitionKeys: withJob ? ['job', 'dt'] : ['dt'],
      parameters: {
        'projection.enabled': 'true',
        ...(withJob ? { 'projection.job.type': 'injected' } : {}),
        'projection.dt.type': 'date',
        'projection.dt.format': 'yyyy-MM-dd',
        'projection.dt.range': `${FIRST_DAY},NOW`,
        'projection.dt.interval': '1',
        'projection.dt.interval.unit': 'DAYS',
        'storage.location.template': `${s3url(prefix)}${withJob ? 'job=${job}/' : ''}dt=\${dt}/`,
        ...extra,
      },
    });

    this.table('Samples', 'samples', 'One usage sample per line, as written by spotfit monitor', SAMPLE_COLUMNS,
      projected('samples/', true, { compressionType: 'gzip' }));
    this.table('Runs', 'runs', 'Run summaries (RunSummary). The .exit markers share the folder: filter "$path" LIKE \'%.json\'',
      RUN_COLUMNS, projected('runs/', true));
    this.table('RunRecords', 'run_records', 'One run attempt each (RunRecord): placement, price, cost, summary', RECORD_COLUMNS,
      projected('records/', false));
    // DynamoDB export (DYNAMODB_JSON): one {"Item": {attr: {"S"|"N"|...: value}}} per line. Typed as
    // a map so the table does not break when the profile item gains attributes.
    this.table(
      'ProfilesExport',
      'profiles_export',
      'Daily DynamoDB export of the profiles table; filter "$path" to the latest export id',
      [['item', 'map<string,struct<s:string,n:string,bool:boolean>>']],
      { location: s3url('exports/profiles/'), partitionKeys: [], parameters: { compressionType: 'gzip' } },
    );

    this.workgroup = new athena.CfnWorkGroup(this, 'WorkGroup', {
      name: `spotfit-${Stack.of(this).stackName}`.slice(0, 128),
      description: 'spotfit queries; results in the data bucket under athena-results/',
      state: 'ENABLED',
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        // 10 GiB per query: a forgotten filter on the samples table costs cents, not dollars.
        bytesScannedCutoffPerQuery: 10 * 1024 * 1024 * 1024,
        engineVersion: { selectedEngineVersion: 'Athena engine version 3' },
        resultConfiguration: {
          outputLocation: s3url('athena-results/'),
          encryptionConfiguration: { encryptionOption: 'SSE_S3' },
        },
      },
    });

    for (const q of namedQueries(props.queryDir)) {
      const nq = new athena.CfnNamedQuery(this, `Query-${q.id}`, {
        name: q.id,
        description: q.description,
        database: this.databaseName,
        workGroup: this.workgroup.ref,
        queryString: q.sql,
      });
      nq.node.addDependency(this.database);
    }
  }

  private table(
    id: string,
    name: string,
    description: string,
    columns: [string, string][],
    opts: { location: string; partitionKeys: string[]; parameters: Record<string, string> },
  ): glue.CfnTable {
    const t = new glue.CfnTable(this, id, {
      catalogId: Aws.ACCOUNT_ID,
      databaseName: this.databaseName,
      tableInput: {
        name,
        description,
        tableType: 'EXTERNAL_TABLE',
        parameters: { classification: 'json', EXTERNAL: 'TRUE', ...opts.parameters },
        partitionKeys: opts.partitionKeys.map((k) => ({ name: k, type: 'string' })),
        storageDescriptor: {
          location: opts.location,
          inputFormat: TEXT_INPUT,
          outputFormat: TEXT_OUTPUT,
          serdeInfo: {
            serializationLibrary: JSON_SERDE,
            // Exit markers and export manifests are not rows: skip what does not parse.
            parameters: { 'ignore.malformed.json': 'true', 'case.insensitive': 'true' },
          },
          columns: columns.map(([n, type]) => ({ name: n, type })),
        },
      },
    });
    t.node.addDependency(this.database);
    // `${job}`/`${dt}` are Athena's projection placeholders, not CloudFormation substitutions.
    (t as CfnResource).addMetadata('cfn-lint', { config: { ignore_checks: ['E1029'] } });
    return t;
  }
}

export interface NamedQuery {
  readonly id: string;
  readonly description: string;
  readonly sql: string;
}

/** Each `NN-name.sql` file: first comment line is the description; the rest is the query. */
export function namedQueries(dir: string): NamedQuery[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((f) => {
      const sql = fs.readFileSync(path.join(dir, f), 'utf8').trim();
      const first = sql.split('\n')[0];
      if (!first.startsWith('-- ')) throw new Error(`${f}: first line must be "-- <description>"`);
      return { id: f.replace(/^[0-9]+-/, '').replace(/\.sql$/, ''), description: first.slice(3).trim().slice(0, 1024), sql };
    });
}
