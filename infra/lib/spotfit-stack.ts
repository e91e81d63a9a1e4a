// The spotfit deployment: storage, the EC2 side (launch template, instance role, security group),
// the eight Lambdas, the state machine from statemachine/, schedules and events, and Athena.
//
// Least privilege is the point of this file. Every IAM statement names its actions; resources
// are ARNs or ARN patterns wherever the service supports resource-level permissions, and EC2
// writes are fenced by condition keys: RunInstances only through our launch template and only
// with the spotfit:managed tag; TerminateInstances only on instances carrying that tag.
import * as fs from 'fs';
import * as path from 'path';
import { Arn, ArnFormat, Aws, CfnOutput, CfnResource, Duration, IResource, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { Analytics } from './analytics';
import { jobRoleId, repoRoot, SpotfitConfig } from './config';
import { loadJobs } from './jobs';
import { FUNCTION_NAMES, FunctionName, lambdaCode } from './lambda-code';

/** Tag the launcher puts on every instance it starts; IAM conditions key off it. */
export const MANAGED_TAG = 'spotfit:managed';

/** ASL placeholder → function. The state machine file is the one source of truth. */
export const SUBSTITUTIONS: Record<string, FunctionName> = {
  SizeJobArn: 'size-job',
  LaunchInstanceArn: 'launch-instance',
  CheckJobArn: 'check-job',
  TerminateInstanceArn: 'terminate-instance',
  RecordRunArn: 'record-run',
};

/**
 * Service integrations the state machine role is granted: Lambda invocations only, plain
 * (`lambda:invoke`, or the function ARN itself) or with a callback (`lambda:invoke.waitForTaskToken`:
 * the Await state, docs/callback.md). Both integrations name the function in
 * `Parameters.FunctionName`, which must then be one of our placeholders.
 */
const ALLOWED_TASK_RESOURCES = /^(arn:aws:states:::lambda:invoke(\.waitForTaskToken)?|\$\{[A-Za-z]+Arn\})$/;
const LAMBDA_INTEGRATION = /^arn:aws:states:::lambda:invoke/;

/** The Step Functions API a callback handler calls with a task token (docs/callback.md). */
export const TASK_RESPONSE_ACTIONS = ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'];

/** Seconds without SendTaskHeartbeat after which an Await times out: three sweep periods. */
export function heartbeatSeconds(reaperEveryMinutes: number): number {
  return 3 * reaperEveryMinutes * 60;
}

export interface SpotfitStackProps extends StackProps {
  readonly config: SpotfitConfig;
}

/** Adds checkov skips, each with its reason, to a resource's metadata. */
export function skipChecks(res: IResource | CfnResource, checks: Record<string, string>): void {
  const cfn = (res instanceof CfnResource ? res : res.node.defaultChild) as CfnResource;
  const prev = (cfn.getMetadata('checkov') as { skip?: { id: string; comment: string }[] } | undefined)?.skip ?? [];
  cfn.addMetadata('checkov', { skip: [...prev, ...Object.entries(checks).map(([id, comment]) => ({ id, comment }))] });
}

export class SpotfitStack extends Stack {
  readonly bucket: s3.Bucket;
  readonly functions: Record<FunctionName, lambda.Function>;
  readonly stateMachine: sfn.StateMachine;
  readonly launchTemplate: ec2.CfnLaunchTemplate;
  readonly instanceRole: iam.Role;
  /** The job roles of spotfit:jobRoles, in their order there. */
  readonly jobRoles: iam.Role[];

  constructor(scope: Construct, id: string, props: SpotfitStackProps) {
    super(scope, id, props);
    const cfg = props.config;
    const removalPolicy = cfg.removal === 'retain' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    // ---------------------------------------------------------------- storage
    this.bucket = new s3.Bucket(this, 'Data', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      bucketKeyEnabled: true,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      // Versioning makes any overwrite of a sample or summary recoverable (see the instance role).
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy,
      lifecycleRules: this.lifecycleRules(cfg),
    });
    const bucket = this.bucket;
    // S3 → EventBridge for every event of the bucket (the ExitMarkers rule below picks the exit
    // markers). Set on the CloudFormation bucket itself: the L2 `eventBridgeEnabled` prop goes
    // through CDK's BucketNotifications custom resource, a Python Lambda whose role may
    // s3:PutBucketNotification on Resource "*", for what CloudFormation does natively.
    (bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };
    skipChecks(bucket, {
      CKV_AWS_18: 'Server access logs need a second bucket per deployment; CloudTrail S3 data events are the audit path where wanted',
    });

    const dataKey = new kms.Key(this, 'DataKey', {
      description: 'spotfit: DynamoDB tables (profiles, runs, capacity, waits) and CloudWatch log groups',
      enableKeyRotation: true,
      removalPolicy,
    });
    // CloudWatch Logs encrypts our log groups with it, and only ours (encryption context).
    dataKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchLogsOfThisAccount',
        principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
        actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey', 'kms:DescribeKey'],
        resources: ['*'],
        conditions: {
          ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${Aws.REGION}:${Aws.ACCOUNT_ID}:log-group:*` },
        },
      }),
    );
    const logGroup = (lid: string) =>
      new logs.LogGroup(this, lid, {
        retention: cfg.logRetentionDays as logs.RetentionDays,
        encryptionKey: dataKey,
        removalPolicy: RemovalPolicy.DESTROY,
      });
    const table = (tid: string, p: Omit<dynamodb.TableProps, 'billingMode'>) =>
      new dynamodb.Table(this, tid, {
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryptionKey: dataKey,
        deletionProtection: cfg.removal === 'retain',
        removalPolicy,
        ...p,
      });
    const profiles = table('Profiles', { partitionKey: { name: 'job', type: dynamodb.AttributeType.STRING } });
    const runs = table('Runs', {
      partitionKey: { name: 'run_id', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'attempt', type: dynamodb.AttributeType.NUMBER },
    });
    runs.addGlobalSecondaryIndex({
      indexName: 'by-job',
      partitionKey: { name: 'job', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'started_at_ms', type: dynamodb.AttributeType.NUMBER },
    });
    const capacity = table('Capacity', {
      partitionKey: { name: 'pool', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expires_at',
    });
    // One item per attempt waiting on a task token (docs/callback.md): written by check-job when it
    // arms the wait, deleted when the attempt is completed; the TTL (deadline + a day) removes
    // what a lost completion left behind.
    const waits = table('Waits', {
      partitionKey: { name: 'run_id', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'attempt', type: dynamodb.AttributeType.NUMBER },
      timeToLiveAttribute: 'expires_at',
    });

    // ---------------------------------------------------------------- EC2 side
    this.instanceRole = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'spotfit job instances: write samples and run results, read the agent',
    });
    // Per-job scoping is not expressible with one role: an instance-role session carries no
    // trustworthy job attribute (EC2 passes no instance tags as session tags, and every request
    // header or object tag is chosen by the writer). So the role is write-only on exactly the three
    // Hive layouts (samples, the job's logs, run summaries and exit markers; no read, list or delete of any job's data), and versioning keeps any overwrite
    // recoverable. Set spotfit:createOnlyWrites once the agent sends If-None-Match to make it
    // create-only, so that no instance can replace an object another run wrote.
    const instancePolicy = new iam.Policy(this, 'InstancePolicy', {
      statements: [
        new iam.PolicyStatement({
          sid: 'WriteOwnLayoutsOnly',
          actions: ['s3:PutObject'],
          resources: [
            bucket.arnForObjects('samples/job=*/dt=*/run=*/*'),
            bucket.arnForObjects('logs/job=*/dt=*/run=*/*'),
            bucket.arnForObjects('runs/job=*/dt=*/*'),
          ],
        }),
        new iam.PolicyStatement({
          sid: 'ReadAgent',
          actions: ['s3:GetObject'],
          resources: [bucket.arnForObjects('agent/*')],
        }),
      ],
    });
    if (this.node.tryGetContext('spotfit:createOnlyWrites') === 'true' || this.node.tryGetContext('spotfit:createOnlyWrites') === true) {
      instancePolicy.addStatements(
        new iam.PolicyStatement({
          sid: 'CreateOnly',
          effect: iam.Effect.DENY,
          actions: ['s3:PutObject'],
          resources: [bucket.arnForObjects('*')],
          conditions: { Null: { 's3:if-none-match': 'true' } },
        }),
      );
    }
    if (cfg.ecrRepositories.length > 0) {
      // Container jobs' images: the token (GetAuthorizationToken has no resource-level
      // permission) and reads of exactly the configured repositories, nothing else of ECR.
      instancePolicy.addStatements(
        new iam.PolicyStatement({ sid: 'EcrToken', actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
        new iam.PolicyStatement({
          sid: 'EcrPullConfiguredRepositories',
          actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
          resources: cfg.ecrRepositories.map((r) =>
            r.startsWith('arn:') ? r : Stack.of(this).formatArn({ service: 'ecr', resource: 'repository', resourceName: r }),
          ),
        }),
      );
    }
    instancePolicy.attachToRole(this.instanceRole);
    const instanceProfile = new iam.CfnInstanceProfile(this, 'InstanceProfile', { roles: [this.instanceRole.roleName] });

    // Job roles (spotfit:jobRoles): the instance profile of a run whose spec names one. Each holds
    // the agent's policy (the same narrow writes) and exactly its configured grants: the secrets
    // its jobs' env_from may read, the S3 objects they may read or write, managed policies.
    const jobProfiles: Record<string, string> = {};
    this.jobRoles = [];
    for (const [name, grants] of Object.entries(cfg.jobRoles)) {
      const id = `JobRole${jobRoleId(name)}`;
      const role = new iam.Role(this, id, {
        assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
        // template_iam.py finds a job role's component by this prefix.
        description: `spotfit job role ${name}: the agent's writes and this role's grants`,
        managedPolicies: grants.managedPolicyArns.map((arn, i) => iam.ManagedPolicy.fromManagedPolicyArn(this, `${id}Managed${i}`, arn)),
      });
      instancePolicy.attachToRole(role);
      const statements: iam.PolicyStatement[] = [];
      const ssm = grants.secrets.filter((x) => x.startsWith('ssm:')).map((x) => x.slice('ssm:'.length));
      if (ssm.length > 0) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'ReadParameters',
            actions: ['ssm:GetParameter'],
            // A parameter's ARN is `parameter` + its name (which may start with `/`).
            resources: ssm.map((n) => Stack.of(this).formatArn({ service: 'ssm', resource: 'parameter', resourceName: n.replace(/^\//, '') })),
          }),
        );
      }
      const sm = grants.secrets.filter((x) => x.startsWith('secretsmanager:')).map((x) => x.slice('secretsmanager:'.length));
      if (sm.length > 0) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'ReadSecrets',
            actions: ['secretsmanager:GetSecretValue'],
            // A secret's ARN ends in `-` and six random characters after its name.
            resources: sm.map((n) =>
              n.startsWith('arn:')
                ? n
                : Stack.of(this).formatArn({
                    service: 'secretsmanager',
                    resource: 'secret',
                    resourceName: n.endsWith('*') ? n : `${n}-??????`,
                    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
                  }),
            ),
          }),
        );
      }
      const objects = (xs: string[]) => xs.map((x) => `arn:${Aws.PARTITION}:s3:::${x.slice('s3://'.length)}`);
      if (grants.s3Read.length > 0) {
        statements.push(new iam.PolicyStatement({ sid: 'ReadData', actions: ['s3:GetObject'], resources: objects(grants.s3Read) }));
      }
      if (grants.s3Write.length > 0) {
        statements.push(new iam.PolicyStatement({ sid: 'WriteResults', actions: ['s3:PutObject'], resources: objects(grants.s3Write) }));
      }
      if (statements.length > 0) {
        new iam.Policy(this, `${id}Policy`, { statements }).attachToRole(role);
      }
      const profile = new iam.CfnInstanceProfile(this, `${id}Profile`, { roles: [role.roleName] });
      jobProfiles[name] = profile.attrArn;
      this.jobRoles.push(role);
    }

    const sg = new ec2.CfnSecurityGroup(this, 'InstanceSecurityGroup', {
      vpcId: cfg.vpcId,
      groupDescription: 'spotfit job instances: no inbound; outbound HTTPS (and spotfit:egressPorts)',
      securityGroupEgress: cfg.egressPorts.map((port) => ({
        ipProtocol: 'tcp',
        fromPort: port,
        toPort: port,
        cidrIp: '0.0.0.0/0',
        description: `outbound tcp/${port}`,
      })),
    });

    this.launchTemplate = new ec2.CfnLaunchTemplate(this, 'LaunchTemplate', {
      launchTemplateData: {
        imageId: cfg.imageId,
        iamInstanceProfile: { arn: instanceProfile.attrArn },
        securityGroupIds: [sg.attrGroupId],
        // A job that powers off its host must not leave a stopped instance and its EBS behind.
        instanceInitiatedShutdownBehavior: 'terminate',
        metadataOptions: {
          httpEndpoint: 'enabled',
          httpTokens: 'required',
          httpPutResponseHopLimit: cfg.imdsHopLimit,
          // The agent reads its job and run id from the instance tags.
          instanceMetadataTags: 'enabled',
        },
        blockDeviceMappings: [
          {
            deviceName: '/dev/xvda',
            ebs: { encrypted: true, volumeType: 'gp3', volumeSize: cfg.rootVolumeGiB, deleteOnTermination: true },
          },
        ],
        monitoring: { enabled: false },
        tagSpecifications: [{ resourceType: 'volume', tags: [{ key: MANAGED_TAG, value: 'true' }] }],
      },
      tagSpecifications: [{ resourceType: 'launch-template', tags: [{ key: MANAGED_TAG, value: 'true' }] }],
    });
    const lt = this.launchTemplate;
    const ltArn = Arn.format({ service: 'ec2', resource: 'launch-template', resourceName: lt.ref }, this);
    const ec2Arn = (resource: string, name: string, account = Aws.ACCOUNT_ID) =>
      Arn.format({ service: 'ec2', resource, resourceName: name, account }, this);

    // ---------------------------------------------------------------- functions
    // Each function gets only the variables it reads (its `ENV` list in functions/<name>/src/lib.rs;
    // infra/test/contract.test.ts holds the two together).
    const bucketVar = { SPOTFIT_BUCKET: bucket.bucketName };
    // check-job and job-events run the same check step, and both reach the waits table.
    const checkVars = { SPOTFIT_CAPACITY_TABLE: capacity.tableName, SPOTFIT_RUNS_TABLE: runs.tableName, SPOTFIT_WAITS_TABLE: waits.tableName };
    const envs: Record<FunctionName, Record<string, string>> = {
      // The bucket for the price overlay; the subnets' zones are the ones live prices rank in.
      'size-job': {
        ...bucketVar,
        SPOTFIT_PROFILES_TABLE: profiles.tableName,
        // The pools' interruption history (record-run adds to it) for learned rates.
        SPOTFIT_CAPACITY_TABLE: capacity.tableName,
        SPOTFIT_REGION: Aws.REGION,
        SPOTFIT_ARCHITECTURES: cfg.architecture,
        SPOTFIT_SUBNETS: JSON.stringify(cfg.subnets),
        SPOTFIT_PRICE_MAX_AGE_S: String(cfg.priceMaxAgeHours * 3600),
      },
      'launch-instance': {
        ...bucketVar,
        SPOTFIT_CAPACITY_TABLE: capacity.tableName,
        SPOTFIT_RUNS_TABLE: runs.tableName,
        SPOTFIT_LAUNCH_TEMPLATE_ID: lt.ref,
        SPOTFIT_SUBNETS: JSON.stringify(cfg.subnets),
        SPOTFIT_INSTANCE_PROFILE_ARN: instanceProfile.attrArn,
        // The allow-list a spec's `role` is looked up in (name → instance profile ARN).
        ...(Object.keys(jobProfiles).length > 0 ? { SPOTFIT_JOB_PROFILES: Stack.of(this).toJsonString(jobProfiles) } : {}),
        SPOTFIT_AGENT_KEY: cfg.agentKey,
        SPOTFIT_REGION: Aws.REGION,
        // Into the state as instance.heartbeat_s, the Await state's HeartbeatSecondsPath.
        SPOTFIT_HEARTBEAT_S: String(heartbeatSeconds(cfg.reaperEveryMinutes)),
        ...(cfg.ecrRegistries.length > 0 ? { SPOTFIT_ECR_REGISTRIES: cfg.ecrRegistries.join(',') } : {}),
      },
      'check-job': { ...bucketVar, ...checkVars },
      'terminate-instance': {},
      'record-run': { ...bucketVar, SPOTFIT_PROFILES_TABLE: profiles.tableName, SPOTFIT_RUNS_TABLE: runs.tableName, SPOTFIT_CAPACITY_TABLE: capacity.tableName },
      // The sweep completes attempts through the same check step as job-events, and its period
      // (a third of the heartbeat bound) sets which sweep probes each wait's marker.
      'reap-instances': {
        ...bucketVar,
        ...checkVars,
        SPOTFIT_HEARTBEAT_S: String(heartbeatSeconds(cfg.reaperEveryMinutes)),
      },
      'job-events': { ...bucketVar, ...checkVars },
      // SPOTFIT_STATE_MACHINE_ARN is added once the state machine exists (below): the state
      // machine's definition names other functions, never this one.
      'start-scheduled': {},
      'refresh-prices': { ...bucketVar, SPOTFIT_REGION: Aws.REGION },
    };
    const timeouts: Record<FunctionName, number> = {
      'size-job': 30,
      'launch-instance': 120,
      'check-job': 30,
      'terminate-instance': 30,
      'record-run': 120,
      'reap-instances': 120,
      // One event: find the attempt, one check, at most one SendTaskSuccess or one terminate.
      'job-events': 60,
      // One StartExecution.
      'start-scheduled': 30,
      // A handful of DescribeSpotPriceHistory pages (1,000 rows each) and one PutObject; the
      // SDK's retries on throttling fit well inside.
      'refresh-prices': 120,
    };
    const fns = {} as Record<FunctionName, lambda.Function>;
    for (const name of FUNCTION_NAMES) {
      const fn = new lambda.Function(this, pascal(name), {
        description: `spotfit ${name}`,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: lambda.Architecture.X86_64,
        handler: 'bootstrap',
        code: lambdaCode(cfg, name),
        memorySize: name === 'record-run' ? 512 : 256,
        timeout: Duration.seconds(timeouts[name]),
        environment: envs[name],
        logGroup: logGroup(`${pascal(name)}Logs`),
        loggingFormat: lambda.LoggingFormat.JSON,
        tracing: lambda.Tracing.ACTIVE,
      });
      skipChecks(fn, {
        CKV_AWS_116: 'Invoked synchronously by Step Functions (which retries and catches) or by EventBridge with its own retry; a DLQ would hold nothing actionable',
        CKV_AWS_117: 'Calls only AWS APIs; a VPC would add NAT or endpoints and cold-start cost for no isolation gain',
        CKV_AWS_115: 'Reserved concurrency is carved out of the account pool and fails deploys on small accounts; executions bound the concurrency',
        CKV_AWS_173: 'The environment holds resource names only, no secrets; Lambda encrypts it at rest with its service key',
      });
      fns[name] = fn;
    }
    this.functions = fns;

    // DynamoDB: each function gets the tables it uses and no more. Written out instead of
    // table.grant*(), which adds wildcard KMS actions (kms:ReEncrypt*, kms:GenerateDataKey*).
    const grantTable = (fn: lambda.Function, t: dynamodb.Table, write: boolean) => {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: [
            'dynamodb:GetItem',
            'dynamodb:BatchGetItem',
            'dynamodb:Query',
            'dynamodb:Scan',
            'dynamodb:ConditionCheckItem',
            'dynamodb:DescribeTable',
            ...(write ? ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'] : []),
          ],
          resources: [t.tableArn, `${t.tableArn}/index/*`],
        }),
      );
    };
    grantTable(fns['size-job'], profiles, false);
    grantTable(fns['record-run'], profiles, true);
    for (const n of ['launch-instance', 'record-run'] as const) grantTable(fns[n], runs, true);
    for (const n of ['size-job', 'check-job', 'reap-instances'] as const) grantTable(fns[n], runs, false);
    // check-job writes no run row: it used to write a running attempt's heartbeat for the
    // reaper's "abandoned" rule, which now spares any attempt an execution waits on (the waits
    // table) instead, so a look at a running attempt costs no write.
    // The callback path (docs/callback.md): exactly the item calls each handler makes, on the
    // table itself (neither table's index). check-job arms a wait; job-events finds the attempt's
    // wait (Query by run), completes it, and closes the run row of an execution that ended without
    // its attempt; the sweep scans every wait, and closes the run rows of what it reaps.
    const items = (n: FunctionName, sid: string, t: dynamodb.Table, actions: string[]) =>
      fns[n].addToRolePolicy(new iam.PolicyStatement({ sid, actions: actions.map((a) => `dynamodb:${a}`), resources: [t.tableArn] }));
    items('check-job', 'ArmWait', waits, ['PutItem', 'GetItem', 'DeleteItem']);
    items('job-events', 'CompleteWait', waits, ['GetItem', 'DeleteItem', 'Query']);
    items('job-events', 'ReadAndCloseRunRow', runs, ['GetItem', 'PutItem']);
    items('reap-instances', 'SweepWaits', waits, ['Scan', 'GetItem', 'DeleteItem']);
    items('reap-instances', 'CloseOrphanRunRow', runs, ['PutItem']);
    grantTable(fns['size-job'], capacity, false);
    for (const n of ['launch-instance', 'check-job', 'record-run', 'reap-instances', 'job-events'] as const) grantTable(fns[n], capacity, true);
    const tableUsers: Record<string, boolean> = {
      'size-job': false,
      'launch-instance': true,
      'check-job': true,
      'record-run': true,
      'reap-instances': true,
      'job-events': true,
    };
    for (const [n, write] of Object.entries(tableUsers)) {
      fns[n as FunctionName].addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'TableKeyViaDynamoDb',
          actions: [
            'kms:Decrypt',
            'kms:DescribeKey',
            ...(write ? ['kms:Encrypt', 'kms:GenerateDataKey', 'kms:ReEncryptFrom', 'kms:ReEncryptTo'] : []),
          ],
          resources: [dataKey.keyArn],
          conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
        }),
      );
    }

    // S3.
    const list = new iam.PolicyStatement({
      sid: 'ListForNotFound',
      // Without ListBucket a missing exit marker reads as 403 instead of 404.
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
    });
    const readRuns = new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [bucket.arnForObjects('runs/*')] });
    // job-events runs check-job's check step: the same exit-marker read.
    for (const n of ['check-job', 'reap-instances', 'job-events'] as const) {
      fns[n].addToRolePolicy(list);
      fns[n].addToRolePolicy(readRuns);
    }
    fns['record-run'].addToRolePolicy(list);
    fns['record-run'].addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [bucket.arnForObjects('samples/*'), bucket.arnForObjects('runs/*')],
      }),
    );
    fns['record-run'].addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [bucket.arnForObjects('runs/*'), bucket.arnForObjects('records/*')],
      }),
    );
    fns['launch-instance'].addToRolePolicy(
      new iam.PolicyStatement({ sid: 'AgentExists', actions: ['s3:GetObject'], resources: [bucket.arnForObjects('agent/*')] }),
    );

    // EC2. Describe* have no resource-level permissions, so their resource is necessarily "*".
    const describe = (...extra: string[]) =>
      new iam.PolicyStatement({
        sid: 'Describe',
        actions: ['ec2:DescribeInstances', 'ec2:DescribeInstanceStatus', ...extra],
        resources: ['*'],
      });
    fns['launch-instance'].addToRolePolicy(describe('ec2:DescribeInstanceTypes', 'ec2:DescribeInstanceTypeOfferings', 'ec2:DescribeSubnets'));
    // Spot prices: the refresher reads the market; record-run reads the pool's history over an
    // attempt's lifetime to bill it. Both map AZ names to ids.
    const prices = new iam.PolicyStatement({
      sid: 'SpotPrices',
      actions: ['ec2:DescribeSpotPriceHistory', 'ec2:DescribeAvailabilityZones'],
      resources: ['*'],
    });
    for (const n of ['refresh-prices', 'record-run'] as const) fns[n].addToRolePolicy(prices);
    // On-demand list prices, daily (the Price List Query API has no resource-level permissions).
    fns['refresh-prices'].addToRolePolicy(new iam.PolicyStatement({ sid: 'OnDemandPrices', actions: ['pricing:GetProducts'], resources: ['*'] }));
    // The overlay: written by the refresher (which reads the previous one to refuse a partial
    // refresh), read by size-job.
    const overlay = bucket.arnForObjects('prices/*');
    fns['refresh-prices'].addToRolePolicy(
      new iam.PolicyStatement({ sid: 'PriceOverlay', actions: ['s3:GetObject', 's3:PutObject'], resources: [overlay] }),
    );
    fns['size-job'].addToRolePolicy(new iam.PolicyStatement({ sid: 'PriceOverlay', actions: ['s3:GetObject'], resources: [overlay] }));
    for (const n of ['check-job', 'terminate-instance', 'reap-instances', 'job-events'] as const) fns[n].addToRolePolicy(describe());

    const viaTemplate = { ArnEquals: { 'ec2:LaunchTemplate': ltArn } };
    const launch = fns['launch-instance'];
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'RunTaggedInstancesFromTemplate',
        actions: ['ec2:RunInstances'],
        resources: [ec2Arn('instance', '*')],
        conditions: { ...viaTemplate, StringEquals: { [`aws:RequestTag/${MANAGED_TAG}`]: 'true' } },
      }),
    );
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'RunInstancesOtherResources',
        actions: ['ec2:RunInstances'],
        resources: [
          ltArn,
          ec2Arn('security-group', sg.attrGroupId),
          ...Object.values(cfg.subnets).map((s) => ec2Arn('subnet', s)),
          ec2Arn('volume', '*'),
          ec2Arn('network-interface', '*'),
          ec2Arn('spot-instances-request', '*'),
        ],
        conditions: viaTemplate,
      }),
    );
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'RunInstancesImage',
        actions: ['ec2:RunInstances'],
        resources: [ec2Arn('image', '*', '')],
        conditions: { ...viaTemplate, StringEquals: { 'ec2:Owner': cfg.amiOwners } },
      }),
    );
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'TagOnLaunchOnly',
        actions: ['ec2:CreateTags'],
        resources: ['instance', 'volume', 'spot-instances-request', 'network-interface'].map((r) => ec2Arn(r, '*')),
        conditions: { StringEquals: { 'ec2:CreateAction': 'RunInstances' } },
      }),
    );
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'PassInstanceRoleToEc2',
        actions: ['iam:PassRole'],
        resources: [this.instanceRole.roleArn, ...this.jobRoles.map((r) => r.roleArn)],
        conditions: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
      }),
    );
    // A spot RunInstances needs the Spot service-linked role; EC2 creates it on first use when the
    // caller may. Granted rather than declared as a CfnServiceLinkedRole, which fails the deploy
    // in every account that already has one; conditioned to that one service and role.
    launch.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'CreateSpotServiceLinkedRole',
        actions: ['iam:CreateServiceLinkedRole'],
        resources: [
          Arn.format(
            { service: 'iam', region: '', resource: 'role', resourceName: 'aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot' },
            this,
          ),
        ],
        conditions: { StringEquals: { 'iam:AWSServiceName': 'spot.amazonaws.com' } },
      }),
    );
    // A `resolve:ssm:` image id is resolved with the caller's permissions at RunInstances: the
    // launch template's, and the images size-job picks per job and type (Amazon Linux 2023, the
    // ECS-optimized and ECS GPU-optimized AL2023), named in infra/machine-images.json, which a
    // Rust test keeps equal to what the launch resolves. Exactly those parameters, nothing else.
    const ssmParams = [cfg.imageId, ...machineImageParameters().map((p) => `resolve:ssm:${p}`)]
      .map(amiParameterArn)
      .filter((a): a is string => a !== undefined);
    launch.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ResolveAmiParameter', actions: ['ssm:GetParameters'], resources: [...new Set(ssmParams)] }),
    );
    const terminate = new iam.PolicyStatement({
      sid: 'TerminateManagedOnly',
      actions: ['ec2:TerminateInstances'],
      resources: [ec2Arn('instance', '*')],
      conditions: { StringEquals: { [`ec2:ResourceTag/${MANAGED_TAG}`]: 'true' } },
    });
    // launch-instance terminates an instance it started when tagging or bookkeeping fails after
    // RunInstances; job-events the instance of an execution that ended without its attempt.
    for (const n of ['launch-instance', 'terminate-instance', 'reap-instances', 'job-events'] as const) fns[n].addToRolePolicy(terminate);

    // ---------------------------------------------------------------- state machine
    const asl = fs.readFileSync(cfg.stateMachineFile, 'utf8');
    checkAsl(asl, cfg.stateMachineFile);
    const smLogs = logGroup('StateMachineLogs');
    const substitutions: Record<string, string> = {};
    for (const [key, fn] of Object.entries(SUBSTITUTIONS)) substitutions[key] = fns[fn].functionArn;
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(asl),
      definitionSubstitutions: substitutions,
      // ERROR with execution data: a failed execution's log event carries its error and cause
      // (without the data they are left out). The group is encrypted with the data key.
      logs: { destination: smLogs, level: sfn.LogLevel.ERROR, includeExecutionData: true },
      tracingEnabled: true,
    });
    for (const fn of new Set(Object.values(SUBSTITUTIONS))) fns[fn].grantInvoke(this.stateMachine);

    // Task tokens (docs/callback.md): check-job (arming, when the job has already ended),
    // job-events and the sweep answer the Await state. The same three actions on the same ARN as
    // `stateMachine.grantTaskResponse(fn)`, but in a policy of its own: grantTaskResponse adds the
    // statement to each role's default policy, which its function DependsOn, and the state
    // machine's definition substitutes check-job's ARN, so check-job → its default policy →
    // state machine → check-job would be a cycle. A separate AWS::IAM::Policy depends on the
    // roles and the state machine, and nothing depends on it. (The IAM reference lists no resource
    // type for SendTask*, but Step Functions authorizes a callback token against the state machine
    // of its execution, which is what CDK grants; iam_lint.py accepts parliament's note on it.)
    new iam.Policy(this, 'TaskResponse', {
      statements: [
        new iam.PolicyStatement({
          sid: 'AnswerOwnStateMachineTasks',
          actions: TASK_RESPONSE_ACTIONS,
          resources: [this.stateMachine.stateMachineArn],
        }),
      ],
      roles: (['check-job', 'job-events', 'reap-instances'] as const).map((n) => fns[n].role!),
    });

    // ---------------------------------------------------------------- schedules and events
    // Every EventBridge target has this dead-letter queue: an event that could not be delivered
    // after its retries (a start refused, the reaper or job-events throttled) is kept, and alarmed
    // on below.
    const dlq = new sqs.Queue(this, 'EventsDeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    skipChecks(dlq, {
      CKV_AWS_27: 'Encrypted at rest with SQS-managed keys (SSE-SQS); a customer key would need EventBridge in its key policy and holds only event envelopes',
    });
    // A scheduled run happens once per tick: EventBridge delivers at least once, so each job's
    // rule hands start-scheduled the event's time with the spec, and the execution is named by
    // (job, tick) (shared/core/src/pipeline/schedule.rs): Step Functions refuses a second
    // execution of a name, so a duplicate delivery starts nothing. (A rule targeting the state
    // machine directly cannot name the execution; EventBridge Scheduler's universal target could,
    // but only from its scheduled-time attribute, whose ':' an execution name may not hold.)
    const starter = fns['start-scheduled'];
    starter.addEnvironment('SPOTFIT_STATE_MACHINE_ARN', this.stateMachine.stateMachineArn);
    starter.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'StartOwnStateMachine',
        actions: ['states:StartExecution'],
        resources: [this.stateMachine.stateMachineArn],
      }),
    );
    for (const job of loadJobs(cfg.jobsFile)) {
      new events.Rule(this, `Job-${job.name}`, {
        description: (job.description ?? `spotfit job ${job.name}`).slice(0, 512),
        schedule: events.Schedule.expression(job.schedule),
        enabled: job.enabled,
        targets: [
          new targets.LambdaFunction(starter, {
            event: events.RuleTargetInput.fromObject({ tick: events.EventField.time, spec: job.spec }),
            retryAttempts: 3,
            deadLetterQueue: dlq,
          }),
        ],
      });
    }
    // The reaper is also the heartbeat sweep of the Await state (docs/callback.md): every wait gets
    // SendTaskHeartbeat, and a wait whose event was lost is completed. The Await state's
    // HeartbeatSeconds is three of these periods (SPOTFIT_HEARTBEAT_S), so one missed tick is not a
    // timeout, and a stopped sweep is one within ~3 periods (the execution then checks by itself).
    const reaper = fns['reap-instances'];
    new events.Rule(this, 'ReaperSchedule', {
      description: 'spotfit sweep: heartbeat the waiting attempts, complete those whose event was lost, terminate managed instances whose run is over, unknown or past its deadline',
      schedule: events.Schedule.rate(Duration.minutes(cfg.reaperEveryMinutes)),
      targets: [new targets.LambdaFunction(reaper, { retryAttempts: 2, deadLetterQueue: dlq })],
    });
    // Live spot prices (docs/prices.md): the refresher writes prices/<region>/spot.json, which
    // size-job ranks on while it is younger than spotfit:priceMaxAgeHours.
    new events.Rule(this, 'PriceRefreshSchedule', {
      description: 'spotfit: refresh the spot price overlay (the price in force per instance type and AZ)',
      schedule: events.Schedule.rate(Duration.minutes(cfg.priceRefreshMinutes)),
      targets: [new targets.LambdaFunction(fns['refresh-prices'], { retryAttempts: 2, deadLetterQueue: dlq })],
    });
    // An attempt's end reaches job-events (docs/callback.md), which finds the attempt, runs the
    // check step and answers the execution's task token. EC2 events carry no tags, so the EC2
    // rules match every instance in the account and job-events ignores instances without
    // spotfit:managed. A spot warning also marks the pool in the capacity table at once (two
    // minutes before the instance dies, so concurrent launches skip it).
    const jobEvents = fns['job-events'];
    const toJobEvents = () => [new targets.LambdaFunction(jobEvents, { retryAttempts: 2, deadLetterQueue: dlq })];
    new events.Rule(this, 'SpotInterruptions', {
      description: 'spotfit: EC2 spot interruption warnings → job-events (marks the pool, completes the attempt)',
      eventPattern: { source: ['aws.ec2'], detailType: ['EC2 Spot Instance Interruption Warning'] },
      targets: toJobEvents(),
    });
    new events.Rule(this, 'InstanceStateChanges', {
      description: 'spotfit: EC2 instances stopping or ending → job-events',
      eventPattern: {
        source: ['aws.ec2'],
        detailType: ['EC2 Instance State-change Notification'],
        detail: { state: ['shutting-down', 'terminated', 'stopping', 'stopped'] },
      },
      targets: toJobEvents(),
    });
    // The agent's exit marker, runs/job=…/dt=…/<run>.exit. One wildcard filter requires both the
    // prefix and the suffix: a field's filters in one array are ORed, so [{prefix}, {suffix}]
    // would match either, and $or only combines fields.
    new events.Rule(this, 'ExitMarkers', {
      description: 'spotfit: an exit marker written under runs/ → job-events',
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: { bucket: { name: [bucket.bucketName] }, object: { key: [{ wildcard: 'runs/*.exit' }] } },
      },
      targets: toJobEvents(),
    });
    // An execution that ended without its attempt (stopped by `spotfit cancel`, failed, timed
    // out): job-events terminates the instance and closes the run row.
    new events.Rule(this, 'ExecutionEnds', {
      description: 'spotfit: executions aborted, failed or timed out → job-events (terminates what they left)',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'FAILED', 'TIMED_OUT'], stateMachineArn: [this.stateMachine.stateMachineArn] },
      },
      targets: toJobEvents(),
    });

    // ---------------------------------------------------------------- Athena
    const analytics = new Analytics(this, 'Analytics', {
      bucket,
      queryDir: path.join(repoRoot(), 'infra', 'athena'),
    });

    // Profiles → S3: a daily DynamoDB export (EventBridge Scheduler calls the API directly; no
    // code). Chosen over the Athena DynamoDB connector, which is a SAR-deployed Lambda with
    // its own spill bucket, scans the table for every query (consuming its read capacity), and
    // is one more function to patch; profiles change once per run, so a daily snapshot is fresh
    // enough for reporting, and the pipeline's own reads never compete with analysts'.
    const exportRole = new iam.Role(this, 'ProfilesExportRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: 'EventBridge Scheduler: export the profiles table to S3',
    });
    exportRole.addToPolicy(
      new iam.PolicyStatement({ actions: ['dynamodb:ExportTableToPointInTime'], resources: [profiles.tableArn] }),
    );
    exportRole.addToPolicy(
      new iam.PolicyStatement({
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [bucket.arnForObjects('exports/profiles/*')],
      }),
    );
    dataKey.grantDecrypt(exportRole);
    new scheduler.CfnSchedule(this, 'ProfilesExport', {
      description: 'Daily export of the spotfit profiles table for Athena (profiles_export)',
      scheduleExpression: cfg.profilesExportSchedule,
      flexibleTimeWindow: { mode: 'FLEXIBLE', maximumWindowInMinutes: 60 },
      target: {
        arn: 'arn:aws:scheduler:::aws-sdk:dynamodb:exportTableToPointInTime',
        roleArn: exportRole.roleArn,
        input: Stack.of(this).toJsonString({
          TableArn: profiles.tableArn,
          S3Bucket: bucket.bucketName,
          S3Prefix: 'exports/profiles',
          S3SseAlgorithm: 'AES256',
          ExportFormat: 'DYNAMODB_JSON',
        }),
        retryPolicy: { maximumRetryAttempts: 3 },
      },
    });

    // ---------------------------------------------------------------- alarms
    // One topic for every alarm; `spotfit:alarmEmail` subscribes an address (confirm the mail).
    const alarmTopic = new sns.Topic(this, 'Alarms', { displayName: 'spotfit alarms', masterKey: dataKey, enforceSSL: true });
    dataKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToTopic',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );
    if (cfg.alarmEmail) alarmTopic.addSubscription(new subs.EmailSubscription(cfg.alarmEmail));
    const alarm = (aid: string, metric: cloudwatch.IMetric, description: string) => {
      const a = new cloudwatch.Alarm(this, aid, {
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(new cwActions.SnsAction(alarmTopic));
      return a;
    };
    const period = Duration.minutes(5);
    alarm('ExecutionsFailed', this.stateMachine.metricFailed({ period, statistic: 'Sum' }), 'spotfit: a job execution failed (see the state machine log group for its cause)');
    alarm('ExecutionsTimedOut', this.stateMachine.metricTimedOut({ period, statistic: 'Sum' }), 'spotfit: a job execution timed out');
    alarm('ExecutionsAborted', this.stateMachine.metricAborted({ period, statistic: 'Sum' }), 'spotfit: a job execution was aborted (job-events terminates its instance)');
    for (const name of FUNCTION_NAMES) {
      const what =
        name === 'reap-instances'
          ? 'the reaper (heartbeat sweep) failed: orphaned instances may keep running, waiting attempts time out on their heartbeat'
          : name === 'job-events'
            ? 'job-events failed: attempts wait for the sweep to complete them (one reaper period later)'
            : name === 'start-scheduled'
              ? 'start-scheduled failed: a scheduled run did not start (an invalid spec in infra/jobs.json, or Step Functions refused it)'
              : name === 'refresh-prices'
                ? 'refresh-prices failed: ranking keeps the last overlay until it is older than spotfit:priceMaxAgeHours, then the snapshot'
                : `${name} returned errors`;
      alarm(`${pascal(name)}Errors`, fns[name].metricErrors({ period, statistic: 'Sum' }), `spotfit: ${what}`);
    }
    alarm(
      'EventsDeadLettersVisible',
      dlq.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
      'spotfit: EventBridge could not deliver an event (a scheduled start, a reaper or job-events call); see the dead-letter queue',
    );

    // ---------------------------------------------------------------- outputs
    const out = (oid: string, value: string, description: string) => new CfnOutput(this, oid, { value, description });
    out('BucketName', bucket.bucketName, 'S3 bucket: samples/, runs/, records/, agent/, athena-results/');
    out('StateMachineArn', this.stateMachine.stateMachineArn, 'aws stepfunctions start-execution --state-machine-arn');
    out('LaunchTemplateId', lt.ref, 'Launch template of job instances');
    out('InstanceRoleArn', this.instanceRole.roleArn, 'Role of job instances');
    out('ProfilesTable', profiles.tableName, 'DynamoDB profiles table');
    out('RunsTable', runs.tableName, 'DynamoDB runs table');
    out('CapacityTable', capacity.tableName, 'DynamoDB capacity marks table');
    out('WaitsTable', waits.tableName, 'DynamoDB table of attempts waiting on a task token');
    out('AthenaWorkGroup', analytics.workgroup.ref, 'Athena workgroup (database spotfit)');
    out('AlarmTopicArn', alarmTopic.topicArn, 'SNS topic of the spotfit alarms');
    out('AgentKey', cfg.agentKey, 'Upload the x86_64 spotfit binary to s3://<bucket>/<this key>');
  }

  private lifecycleRules(cfg: SpotfitConfig): s3.LifecycleRule[] {
    const data = (prefix: string): s3.LifecycleRule => ({
      id: `tier-and-expire-${prefix.replace(/\/$/, '')}`,
      prefix,
      transitions: [
        { storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(cfg.lifecycle.infrequentAccessDays) },
        // Glacier Instant Retrieval: still readable by Athena, unlike Flexible Retrieval.
        { storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(cfg.lifecycle.glacierIrDays) },
      ],
      expiration: Duration.days(cfg.lifecycle.expireDays),
      noncurrentVersionExpiration: Duration.days(30),
      abortIncompleteMultipartUploadAfter: Duration.days(7),
    });
    return [
      data('samples/'),
      data('runs/'),
      data('records/'),
      {
        id: 'expire-exports',
        prefix: 'exports/',
        expiration: Duration.days(cfg.lifecycle.exportsExpireDays),
        noncurrentVersionExpiration: Duration.days(1),
        abortIncompleteMultipartUploadAfter: Duration.days(1),
      },
      {
        id: 'expire-athena-results',
        prefix: 'athena-results/',
        expiration: Duration.days(30),
        noncurrentVersionExpiration: Duration.days(1),
        abortIncompleteMultipartUploadAfter: Duration.days(1),
      },
      { id: 'old-agent-versions', prefix: 'agent/', noncurrentVersionExpiration: Duration.days(30) },
    ];
  }
}

/** The public SSM parameters of the images the launch may boot (infra/machine-images.json). */
export function machineImageParameters(): string[] {
  const file = path.join(repoRoot(), 'infra', 'machine-images.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { parameters: string[] };
  return doc.parameters;
}

/**
 * The ARN of the SSM parameter a `resolve:ssm:NAME[:VERSION]` image id names, or undefined for a
 * plain AMI id. AWS's public parameters (/aws/service/...) carry no account in their ARN.
 */
export function amiParameterArn(imageId: string): string | undefined {
  if (!imageId.startsWith('resolve:ssm:')) return undefined;
  let name = imageId.slice('resolve:ssm:'.length);
  name = name.replace(/:[^:/]+$/, '');
  if (!name.startsWith('/')) name = `/${name}`;
  const account = name.startsWith('/aws/service/') ? '' : Aws.ACCOUNT_ID;
  return `arn:${Aws.PARTITION}:ssm:${Aws.REGION}:${account}:parameter${name}`;
}

function pascal(name: string): string {
  return name
    .split('-')
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
}

/**
 * The definition may only use the placeholders we substitute, and only call Lambda: anything
 * else would run with permissions this stack does not grant, so fail synth instead of the run.
 */
export function checkAsl(asl: string, file: string): void {
  let doc: unknown;
  try {
    doc = JSON.parse(asl);
  } catch (e) {
    throw new Error(`${file}: not JSON: ${(e as Error).message}`);
  }
  for (const m of asl.matchAll(/\$\{([^}]*)\}/g)) {
    if (!(m[1] in SUBSTITUTIONS)) {
      throw new Error(`${file}: unknown placeholder \${${m[1]}} (known: ${Object.keys(SUBSTITUTIONS).join(', ')})`);
    }
  }
  const walk = (states: Record<string, Record<string, unknown>>) => {
    for (const [name, st] of Object.entries(states)) {
      if (st.Type === 'Task' && typeof st.Resource === 'string' && !ALLOWED_TASK_RESOURCES.test(st.Resource)) {
        throw new Error(`${file}: state ${name} uses ${st.Resource}; the stack grants the state machine lambda:invoke only`);
      }
      // An integration names its function in Parameters: one of ours, fixed (not a path), so that
      // the role's lambda:InvokeFunction on exactly the substituted functions is what it needs.
      if (st.Type === 'Task' && typeof st.Resource === 'string' && LAMBDA_INTEGRATION.test(st.Resource)) {
        const params = (st.Parameters ?? {}) as Record<string, unknown>;
        const fnName = params.FunctionName;
        const m = typeof fnName === 'string' ? /^\$\{([A-Za-z]+)\}$/.exec(fnName) : null;
        if (!m || !(m[1] in SUBSTITUTIONS)) {
          const shown = 'FunctionName.$' in params ? `FunctionName.$ ${JSON.stringify(params['FunctionName.$'])}` : JSON.stringify(fnName);
          throw new Error(
            `${file}: state ${name} (${st.Resource}) calls ${shown}; Parameters.FunctionName must be one of ` +
              Object.keys(SUBSTITUTIONS).map((k) => `\${${k}}`).join(', '),
          );
        }
      }
      const nested = [
        ...(((st.Branches as { States: Record<string, Record<string, unknown>> }[]) ?? []).map((b) => b.States)),
        ...(st.Iterator ? [(st.Iterator as { States: Record<string, Record<string, unknown>> }).States] : []),
        ...(st.ItemProcessor ? [(st.ItemProcessor as { States: Record<string, Record<string, unknown>> }).States] : []),
      ];
      nested.forEach(walk);
    }
  };
  walk((doc as { States: Record<string, Record<string, unknown>> }).States ?? {});
}
