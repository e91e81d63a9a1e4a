// Security properties of the synthesized template, asserted one by one (not a snapshot).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { Match } from 'aws-cdk-lib/assertions';
import { repoRoot } from '../lib/config';
import { FUNCTION_NAMES } from '../lib/lambda-code';
import { asArray, functionRole, render, resourcesOfType, statements, synth } from './helpers';

const { stack, template, json } = synth();
const all = statements(json);
const identity = all.filter((s) => s.kind === 'identity');
const logicalId = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);
const roleOf = (name: keyof typeof stack.functions) => functionRole(json, logicalId(stack.functions[name]));
const instanceRoleId = logicalId(stack.instanceRole);
const grants = (action: string) =>
  identity.filter((s) => s.statement.Effect === 'Allow' && asArray(s.statement.Action).includes(action));

test('launch template requires IMDSv2, encrypts every EBS volume and terminates on shutdown', () => {
  const [[, lt]] = resourcesOfType(json, 'AWS::EC2::LaunchTemplate');
  const data = lt.LaunchTemplateData as Record<string, any>;
  assert.equal(data.MetadataOptions.HttpTokens, 'required');
  assert.equal(data.MetadataOptions.HttpEndpoint, 'enabled');
  assert.ok(data.MetadataOptions.HttpPutResponseHopLimit <= 2);
  assert.ok(data.BlockDeviceMappings.length > 0);
  for (const bdm of data.BlockDeviceMappings) assert.equal(bdm.Ebs.Encrypted, true, JSON.stringify(bdm));
  assert.equal(data.InstanceInitiatedShutdownBehavior, 'terminate');
  const [[profileId]] = resourcesOfType(json, 'AWS::IAM::InstanceProfile');
  assert.deepEqual(data.IamInstanceProfile, { Arn: { 'Fn::GetAtt': [profileId, 'Arn'] } });
  assert.equal(data.NetworkInterfaces, undefined, 'no public IP or interface override in the template');
});

test('security group has no inbound rule and only the configured egress', () => {
  assert.equal(resourcesOfType(json, 'AWS::EC2::SecurityGroupIngress').length, 0);
  const sgs = resourcesOfType(json, 'AWS::EC2::SecurityGroup');
  assert.equal(sgs.length, 1);
  const [, sg] = sgs[0];
  assert.equal(sg.SecurityGroupIngress, undefined);
  assert.deepEqual(
    (sg.SecurityGroupEgress as any[]).map((e) => [e.IpProtocol, e.FromPort, e.ToPort]),
    [['tcp', 443, 443]],
  );
});

test('bucket blocks public access, is encrypted, versioned, and its policy denies non-TLS', () => {
  template.hasResourceProperties('AWS::S3::Bucket', {
    PublicAccessBlockConfiguration: {
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    },
    BucketEncryption: {
      ServerSideEncryptionConfiguration: [Match.objectLike({ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } })],
    },
    VersioningConfiguration: { Status: 'Enabled' },
  });
  const bucketStmts = all.filter((s) => s.kind === 'bucket').map((s) => s.statement);
  const tls = bucketStmts.find(
    (s) => s.Effect === 'Deny' && JSON.stringify(s.Condition) === JSON.stringify({ Bool: { 'aws:SecureTransport': 'false' } }),
  );
  assert.ok(tls, 'a Deny on aws:SecureTransport=false');
  assert.deepEqual(tls.Action, 's3:*');
  const res = asArray(tls.Resource).map(render);
  assert.ok(res.some((r) => r.endsWith('.Arn}')) && res.some((r) => r.endsWith('/*')), res.join(' '));
  assert.ok(
    bucketStmts.every((s) => s.Effect === 'Deny'),
    'the bucket policy only denies: access is granted by roles',
  );
});

test('bucket lifecycle tiers and expires data, and cleans up exports and query results', () => {
  const [[, b]] = resourcesOfType(json, 'AWS::S3::Bucket');
  const rules = (b.LifecycleConfiguration as any).Rules as any[];
  for (const prefix of ['samples/', 'runs/', 'records/']) {
    const r = rules.find((x) => x.Prefix === prefix);
    assert.ok(r, prefix);
    assert.ok(r.ExpirationInDays > 0 && r.Transitions.length === 2);
  }
  assert.ok(rules.find((x) => x.Prefix === 'exports/')?.ExpirationInDays);
  assert.ok(rules.find((x) => x.Prefix === 'athena-results/')?.ExpirationInDays);
});

test('tables: on-demand, point-in-time recovery, KMS encryption; capacity and waits have a TTL', () => {
  const tables = resourcesOfType(json, 'AWS::DynamoDB::Table');
  assert.equal(tables.length, 4);
  const dataKey = resourcesOfType(json, 'AWS::KMS::Key').map(([id]) => id);
  assert.equal(dataKey.length, 1);
  for (const [id, t] of tables) {
    assert.equal(t.BillingMode, 'PAY_PER_REQUEST', id);
    assert.deepEqual(t.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true }, id);
    const sse = t.SSESpecification as any;
    assert.equal(sse.SSEEnabled, true, id);
    assert.equal(sse.SSEType, 'KMS', id);
    assert.deepEqual(sse.KMSMasterKeyId, { 'Fn::GetAtt': [dataKey[0], 'Arn'] }, id);
  }
  // The waits table (docs/callback.md): run_id/attempt like the runs table, TTL expires_at, kept
  // like the runs table when the stack goes (retain: deletion protection and Retain).
  const waits = Object.entries(json.Resources).filter(([id, r]) => id.startsWith('Waits') && r.Type === 'AWS::DynamoDB::Table');
  assert.equal(waits.length, 1);
  const [waitsId, w] = waits[0] as [string, any];
  assert.deepEqual(w.Properties.KeySchema, [
    { AttributeName: 'run_id', KeyType: 'HASH' },
    { AttributeName: 'attempt', KeyType: 'RANGE' },
  ]);
  assert.deepEqual(w.Properties.AttributeDefinitions, [
    { AttributeName: 'run_id', AttributeType: 'S' },
    { AttributeName: 'attempt', AttributeType: 'N' },
  ]);
  assert.deepEqual(w.Properties.TimeToLiveSpecification, { AttributeName: 'expires_at', Enabled: true });
  assert.equal(w.Properties.GlobalSecondaryIndexes, undefined);
  const runsId = Object.keys(json.Resources).find((k) => k.startsWith('Runs') && json.Resources[k].Type === 'AWS::DynamoDB::Table')!;
  const runsRes = json.Resources[runsId] as any;
  for (const k of ['DeletionPolicy', 'UpdateReplacePolicy']) assert.equal(w[k], runsRes[k], `${waitsId} ${k}`);
  assert.equal(w.DeletionPolicy, 'Retain');
  assert.equal(w.Properties.DeletionProtectionEnabled, runsRes.Properties.DeletionProtectionEnabled);
  const { json: destroy } = synth({ 'spotfit:removal': 'destroy' });
  const wd = Object.entries(destroy.Resources).find(([id, r]) => id.startsWith('Waits') && r.Type === 'AWS::DynamoDB::Table')![1] as any;
  assert.equal(wd.DeletionPolicy, 'Delete');
  template.hasResourceProperties('AWS::DynamoDB::Table', {
    KeySchema: [{ AttributeName: 'pool', KeyType: 'HASH' }],
    TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
  });
  template.hasResourceProperties('AWS::DynamoDB::Table', {
    KeySchema: [
      { AttributeName: 'run_id', KeyType: 'HASH' },
      { AttributeName: 'attempt', KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      Match.objectLike({
        KeySchema: [
          { AttributeName: 'job', KeyType: 'HASH' },
          { AttributeName: 'started_at_ms', KeyType: 'RANGE' },
        ],
      }),
    ],
  });
  template.hasResourceProperties('AWS::DynamoDB::Table', { KeySchema: [{ AttributeName: 'job', KeyType: 'HASH' }] });
});

test('no IAM action contains a wildcard', () => {
  for (const s of all) {
    // The one exception is KMS's own default key-policy statement, which delegates the key's
    // administration to the account's IAM policies (without it the key is unmanageable).
    const isKeyRootDelegation =
      s.kind === 'key' && render(s.statement.Principal).includes(':iam::') && render(s.statement.Principal).includes(':root');
    // A bucket-policy Deny on s3:* is a restriction, not a grant.
    const isDeny = s.statement.Effect === 'Deny';
    if (isKeyRootDelegation || isDeny) continue;
    for (const a of asArray(s.statement.Action)) {
      assert.ok(!a.includes('*'), `${s.holder}: action ${a} has a wildcard`);
    }
  }
});

test('Resource "*" only for actions that have no resource-level permissions', () => {
  const unscoped = new Set([
    'ec2:DescribeInstances',
    'ec2:DescribeInstanceStatus',
    'ec2:DescribeInstanceTypes',
    'ec2:DescribeInstanceTypeOfferings',
    'ec2:DescribeSpotPriceHistory',
    'ec2:DescribeAvailabilityZones',
    'pricing:GetProducts',
    'ec2:DescribeSubnets',
    'xray:PutTraceSegments',
    'xray:PutTelemetryRecords',
    'xray:GetSamplingRules',
    'xray:GetSamplingTargets',
    'logs:CreateLogDelivery',
    'logs:GetLogDelivery',
    'logs:UpdateLogDelivery',
    'logs:DeleteLogDelivery',
    'logs:ListLogDeliveries',
    'logs:PutResourcePolicy',
    'logs:DescribeResourcePolicies',
    'logs:DescribeLogGroups',
    'ecr:GetAuthorizationToken',
  ]);
  for (const s of identity) {
    if (!asArray(s.statement.Resource).includes('*')) continue;
    for (const a of asArray(s.statement.Action)) assert.ok(unscoped.has(a), `${s.holder}: ${a} on Resource "*"`);
  }
});

test('RunInstances only through the launch template, instances only with the spotfit tag', () => {
  const run = grants('ec2:RunInstances');
  assert.ok(run.length >= 3);
  const launchRole = roleOf('launch-instance');
  const ltRef = logicalId({ node: { defaultChild: stack.launchTemplate } });
  for (const s of run) {
    assert.deepEqual(s.roles, [launchRole], 'only launch-instance may run instances');
    const lt = s.statement.Condition?.ArnEquals?.['ec2:LaunchTemplate'];
    assert.ok(lt && render(lt).includes(`:launch-template/{${ltRef}}`), `${s.statement.Sid}: ${render(lt)}`);
    for (const r of asArray(s.statement.Resource)) assert.notEqual(r, '*');
  }
  const onInstance = run.filter((s) => asArray(s.statement.Resource).some((r) => render(r).endsWith(':instance/*')));
  assert.equal(onInstance.length, 1);
  assert.deepEqual(onInstance[0].statement.Condition?.StringEquals, { 'aws:RequestTag/spotfit:managed': 'true' });
  const tagging = grants('ec2:CreateTags');
  assert.ok(tagging.length > 0);
  for (const s of tagging) assert.deepEqual(s.statement.Condition, { StringEquals: { 'ec2:CreateAction': 'RunInstances' } });
});

test('TerminateInstances only on instances tagged spotfit:managed=true', () => {
  const term = grants('ec2:TerminateInstances');
  assert.ok(term.length >= 1);
  for (const s of term) {
    assert.deepEqual(s.statement.Condition, { StringEquals: { 'ec2:ResourceTag/spotfit:managed': 'true' } });
    assert.ok(asArray(s.statement.Resource).every((r) => render(r).endsWith(':instance/*')));
  }
  const roles = new Set(term.flatMap((s) => s.roles));
  const expected = new Set(['launch-instance', 'terminate-instance', 'reap-instances', 'job-events'].map((n) => roleOf(n as never)));
  assert.deepEqual(roles, expected);
  assert.ok(!roles.has(instanceRoleId));
});

test('iam:PassRole only for the instance role, only to EC2, only by the launcher', () => {
  const pass = grants('iam:PassRole');
  assert.equal(pass.length, 1);
  const s = pass[0];
  assert.deepEqual(s.roles, [roleOf('launch-instance')]);
  assert.deepEqual(asArray(s.statement.Resource), [{ 'Fn::GetAtt': [instanceRoleId, 'Arn'] }]);
  assert.deepEqual(s.statement.Condition, { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } });
  assert.ok(asArray(s.statement.Action).every((a) => a === 'iam:PassRole'));
});

test('instance role: write-only on the samples/ and runs/ layouts, read only the agent', () => {
  const mine = identity.filter((s) => s.roles.includes(instanceRoleId));
  assert.ok(mine.length > 0);
  const seen: string[] = [];
  for (const s of mine) {
    for (const a of asArray(s.statement.Action)) {
      for (const r of asArray(s.statement.Resource).map(render)) {
        const key = r.replace(/^\{[^}]+\.Arn\}/, '');
        seen.push(`${a} ${key}`);
      }
    }
  }
  assert.deepEqual(seen.sort(), [
    's3:GetObject /agent/*',
    's3:PutObject /logs/job=*/dt=*/run=*/*',
    's3:PutObject /runs/job=*/dt=*/*',
    's3:PutObject /samples/job=*/dt=*/run=*/*',
  ]);
  template.hasResourceProperties('AWS::IAM::Role', {
    AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'ec2.amazonaws.com' } })] },
  });
});

test('create-only writes can be enforced for the instance role', () => {
  const { json: j, stack: st } = synth({ 'spotfit:createOnlyWrites': 'true' });
  const role = st.getLogicalId(st.instanceRole.node.defaultChild as never);
  const deny = statements(j).find((s) => s.roles.includes(role) && s.statement.Effect === 'Deny');
  assert.deepEqual(deny?.statement.Condition, { Null: { 's3:if-none-match': 'true' } });
});

test('container images: no ECR access by default; with spotfit:ecrRepositories exactly those repositories', () => {
  const instanceRole = (st: typeof stack) => st.getLogicalId(st.instanceRole.node.defaultChild as never);
  const ecr = (j: typeof json, role: string) =>
    statements(j).filter((s) => s.roles.includes(role) && asArray(s.statement.Action).some((a) => String(a).startsWith('ecr:')));
  assert.deepEqual(ecr(json, instanceRole(stack)), []);
  const arn = 'arn:aws:ecr:eu-west-1:210987654321:repository/shared/base';
  const { json: j, stack: st } = synth({ 'spotfit:ecrRepositories': `nlp/train,${arn}`, 'spotfit:ecrRegistries': '127.0.0.1:5000' });
  const grants = ecr(j, instanceRole(st));
  const token = grants.find((s) => s.statement.Sid === 'EcrToken')!;
  assert.deepEqual(asArray(token.statement.Action), ['ecr:GetAuthorizationToken']);
  const pull = grants.find((s) => s.statement.Sid === 'EcrPullConfiguredRepositories')!;
  assert.deepEqual(asArray(pull.statement.Action).sort(), ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer']);
  const resources = asArray(pull.statement.Resource).map(render);
  assert.equal(resources.length, 2);
  assert.ok(resources[0].endsWith(':repository/nlp/train') && resources[0].includes('ecr'), resources[0]);
  assert.equal(resources[1], arn);
  assert.equal(grants.length, 2, 'nothing else of ECR');
  const launch = resourcesOfType(j, 'AWS::Lambda::Function').find(([, f]) => f.Description === 'spotfit launch-instance')![1] as any;
  assert.equal(launch.Environment.Variables.SPOTFIT_ECR_REGISTRIES, '127.0.0.1:5000');
  assert.throws(() => synth({ 'spotfit:ecrRepositories': 'Bad Name' }), /spotfit:ecrRepositories/);
});

test('job roles: none by default; each configured one holds the agent policy and exactly its grants, and only they may be passed', () => {
  assert.equal(stack.jobRoles.length, 0);
  const roles = {
    etl: {
      secrets: ['ssm:/team/db/password', 'ssm:/team/etl/*', 'secretsmanager:team/api-key', 'secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf'],
      s3Read: ['s3://team-data/inputs/*'],
      s3Write: ['s3://team-data/results/*'],
    },
    'nlp.gpu': { managedPolicyArns: ['arn:aws:iam::aws:policy/AmazonSageMakerReadOnly'] },
  };
  const { json: j, stack: st } = synth({ 'spotfit:jobRoles': JSON.stringify(roles) });
  assert.equal(st.jobRoles.length, 2);
  const id = (r: { node: { defaultChild?: unknown } }) => st.getLogicalId(r.node.defaultChild as never);
  const [etl, nlp] = st.jobRoles.map(id);
  const seen = (role: string) =>
    statements(j)
      .filter((s) => s.kind === 'identity' && s.roles.includes(role))
      .flatMap((s) => asArray(s.statement.Action).flatMap((a) => asArray(s.statement.Resource).map((r) => `${a} ${render(r).replace(/^\{[^}]+\.Arn\}/, '')}`)))
      .sort();
  const agent = ['s3:GetObject /agent/*', 's3:PutObject /logs/job=*/dt=*/run=*/*', 's3:PutObject /runs/job=*/dt=*/*', 's3:PutObject /samples/job=*/dt=*/run=*/*'];
  const etlSeen = seen(etl);
  for (const a of agent) assert.ok(etlSeen.includes(a), `the etl role lacks the agent's ${a}`);
  const own = etlSeen.filter((x) => !agent.includes(x));
  assert.deepEqual(own, [
    's3:GetObject arn:{AWS::Partition}:s3:::team-data/inputs/*',
    's3:PutObject arn:{AWS::Partition}:s3:::team-data/results/*',
    'secretsmanager:GetSecretValue arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf',
    'secretsmanager:GetSecretValue arn:{AWS::Partition}:secretsmanager:{AWS::Region}:{AWS::AccountId}:secret:team/api-key-??????',
    'ssm:GetParameter arn:{AWS::Partition}:ssm:{AWS::Region}:{AWS::AccountId}:parameter/team/db/password',
    'ssm:GetParameter arn:{AWS::Partition}:ssm:{AWS::Region}:{AWS::AccountId}:parameter/team/etl/*',
  ]);
  assert.deepEqual(seen(nlp), agent, 'a role with managed policies only gets no inline grant beyond the agent\'s');
  const nlpRole = j.Resources[nlp].Properties as any;
  assert.deepEqual(nlpRole.ManagedPolicyArns, ['arn:aws:iam::aws:policy/AmazonSageMakerReadOnly']);
  // the default instance role gets none of it
  assert.deepEqual(seen(st.getLogicalId(st.instanceRole.node.defaultChild as never)), agent);
  // PassRole: the instance role and exactly the job roles, to EC2 only
  const pass = statements(j).filter((s) => s.kind === 'identity' && asArray(s.statement.Action).includes('iam:PassRole'));
  assert.equal(pass.length, 1);
  assert.deepEqual(
    asArray(pass[0].statement.Resource).map(render).sort(),
    [st.getLogicalId(st.instanceRole.node.defaultChild as never), etl, nlp].map((r) => `{${r}.Arn}`).sort(),
  );
  // the launcher's allow-list maps each name to its own profile
  const launch = resourcesOfType(j, 'AWS::Lambda::Function').find(([, f]) => f.Description === 'spotfit launch-instance')![1] as any;
  const profiles = render(launch.Environment.Variables.SPOTFIT_JOB_PROFILES);
  for (const [name, role] of [['etl', etl], ['nlp.gpu', nlp]]) {
    const [pid] = resourcesOfType(j, 'AWS::IAM::InstanceProfile').find(([, p]) => asArray(p.Roles).some((r) => render(r) === `{${role}}`))!;
    assert.ok(profiles.includes(`"${name}":"{${pid}.Arn}"`), profiles);
  }
  // bad configuration fails synth naming the key
  assert.throws(() => synth({ 'spotfit:jobRoles': '{"etl": {"secrets": ["vault:/x"]}}' }), /spotfit:jobRoles\.etl\.secrets/);
  assert.throws(() => synth({ 'spotfit:jobRoles': '{"a-b": {}, "ab": {}}' }), /differ only in punctuation/);
  assert.throws(() => synth({ 'spotfit:jobRoles': '{"etl": {"s3Read": ["team-data/x"]}}' }), /spotfit:jobRoles\.etl\.s3Read/);
  assert.throws(() => synth({ 'spotfit:jobRoles': '{"etl": {"admin": true}}' }), /unknown field admin/);
});

test('every function runs provided.al2023', () => {
  const fns = resourcesOfType(json, 'AWS::Lambda::Function');
  assert.equal(fns.length, FUNCTION_NAMES.length, 'ours, and no CDK helper function (e.g. a bucket-notifications handler)');
  for (const [id, f] of fns) {
    assert.equal(f.Runtime, 'provided.al2023', id);
    assert.equal(f.Handler, 'bootstrap', id);
  }
  const launch = fns.find(([, f]) => f.Description === 'spotfit launch-instance')![1] as any;
  assert.deepEqual(JSON.parse(launch.Environment.Variables.SPOTFIT_SUBNETS), {
    'use1-az1': 'subnet-0123456789abcdef0',
    'use1-az2': 'subnet-0123456789abcdef1',
  });
});

test('state machine may invoke exactly the five pipeline functions', () => {
  const smRole = (json.Resources[logicalId(stack.stateMachine)].Properties as any).RoleArn['Fn::GetAtt'][0];
  const invoke = identity.filter((s) => s.roles.includes(smRole) && asArray(s.statement.Action).includes('lambda:InvokeFunction'));
  const targets = new Set(invoke.flatMap((s) => asArray(s.statement.Resource).map(render)).map((r) => r.replace(/\.Arn\}.*$/, '}')));
  const expected = new Set(
    ['size-job', 'launch-instance', 'check-job', 'terminate-instance', 'record-run'].map(
      (n) => `{${logicalId(stack.functions[n as never] as never)}}`,
    ),
  );
  assert.deepEqual(targets, expected);
});

test('only the launcher and recorder touch DynamoDB writes they need', () => {
  const writers = (tableName: string) =>
    new Set(
      grants('dynamodb:PutItem')
        .filter((s) => asArray(s.statement.Resource).some((r) => render(r).includes(tableName)))
        .flatMap((s) => s.roles),
    );
  const id = (n: string) => json.Resources && Object.keys(json.Resources).find((k) => k.startsWith(n) && json.Resources[k].Type === 'AWS::DynamoDB::Table')!;
  assert.deepEqual(writers(id('Profiles')), new Set([roleOf('record-run')]));
  // job-events and the reaper close the run rows of attempts whose execution is gone; check-job
  // writes none (the reaper spares waited-on attempts by the waits table, not by a heartbeat).
  assert.deepEqual(
    writers(id('Runs')),
    new Set(['launch-instance', 'record-run', 'job-events', 'reap-instances'].map((n) => roleOf(n as never))),
  );
  for (const n of ['job-events', 'reap-instances'] as const) {
    const w = grants('dynamodb:PutItem').filter((s) => s.roles.includes(roleOf(n)) && asArray(s.statement.Resource).some((r) => render(r).includes(id('Runs'))));
    assert.equal(w.length, 1, n);
    assert.deepEqual(asArray(w[0].statement.Resource).map(render), [`{${id('Runs')}.Arn}`], `${n}: runs table only, not its index`);
    assert.ok(!asArray(w[0].statement.Action).some((a) => /UpdateItem|DeleteItem|BatchWriteItem/.test(a)), `${n}: no update or delete of run rows`);
  }
});

test('the launcher may create the Spot service-linked role, and only that one', () => {
  const slr = grants('iam:CreateServiceLinkedRole');
  assert.equal(slr.length, 1);
  assert.deepEqual(slr[0].roles, [roleOf('launch-instance')]);
  assert.deepEqual(slr[0].statement.Condition, { StringEquals: { 'iam:AWSServiceName': 'spot.amazonaws.com' } });
  assert.ok(render(slr[0].statement.Resource).endsWith(':role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot'));
  assert.equal(resourcesOfType(json, 'AWS::IAM::ServiceLinkedRole').length, 0, 'a declared SLR fails in accounts that have one');
});

test('the launcher may read the image parameters Rust resolves, and only those', () => {
  const get = grants('ssm:GetParameters');
  assert.equal(get.length, 1);
  assert.deepEqual(get[0].roles, [roleOf('launch-instance')]);
  // infra/machine-images.json is written by a Rust test from the images the launch boots.
  const doc = JSON.parse(fs.readFileSync(path.join(repoRoot(), 'infra', 'machine-images.json'), 'utf8'));
  const want = (doc.parameters as string[]).map((p) => `arn:{AWS::Partition}:ssm:{AWS::Region}::parameter${p}`);
  assert.ok(want.length >= 5, 'one parameter per image and architecture');
  assert.deepEqual(asArray(get[0].statement.Resource).map(render).sort(), [...want].sort());
  for (const r of asArray(get[0].statement.Resource).map(render)) assert.ok(r.includes(':parameter/aws/service/'), r);
  // a plain AMI id for the template adds nothing: the same five public parameters
  const { json: plain } = synth({ 'spotfit:imageId': 'ami-0123456789abcdef0' });
  const plainGets = statements(plain).filter((s) => asArray(s.statement.Action).includes('ssm:GetParameters'));
  assert.equal(plainGets.length, 1);
  assert.equal(asArray(plainGets[0].statement.Resource).length, want.length);
});

test('alarms: failed executions, every function\'s errors, the reaper, the dead-letter queue; all to one topic', () => {
  const alarms = resourcesOfType(json, 'AWS::CloudWatch::Alarm').map(([, p]) => p as any);
  const metric = (ns: string, name: string) => alarms.filter((a) => a.Namespace === ns && a.MetricName === name);
  assert.ok(metric('AWS/States', 'ExecutionsFailed').length === 1);
  assert.equal(metric('AWS/Lambda', 'Errors').length, FUNCTION_NAMES.length);
  for (const n of ['reap-instances', 'job-events', 'start-scheduled', 'refresh-prices'] as const) {
    assert.ok(alarms.some((a) => a.MetricName === 'Errors' && render(a.Dimensions).includes(logicalId(stack.functions[n] as never))), n);
  }
  assert.equal(metric('AWS/SQS', 'ApproximateNumberOfMessagesVisible').length, 1);
  const topics = resourcesOfType(json, 'AWS::SNS::Topic');
  assert.equal(topics.length, 1);
  for (const a of alarms) assert.deepEqual(a.AlarmActions, [{ Ref: topics[0][0] }]);
  assert.equal(resourcesOfType(json, 'AWS::SNS::Subscription').length, 0);
  const { json: withMail } = synth({ 'spotfit:alarmEmail': 'ops@example.com' });
  const sub = resourcesOfType(withMail, 'AWS::SNS::Subscription');
  assert.equal(sub.length, 1);
  assert.equal((sub[0][1] as any).Protocol, 'email');
  assert.throws(() => synth({ 'spotfit:alarmEmail': 'not-an-address' }), /spotfit:alarmEmail/);
});

test('every EventBridge target has a dead-letter queue; failed executions log their cause', () => {
  const rules = resourcesOfType(json, 'AWS::Events::Rule');
  assert.ok(rules.length >= 3);
  for (const [id, r] of rules) {
    for (const t of (r as any).Targets) assert.ok(t.DeadLetterConfig?.Arn, `${id}: target ${t.Id} has no DLQ`);
  }
  const sm = resourcesOfType(json, 'AWS::StepFunctions::StateMachine')[0][1] as any;
  assert.equal(sm.LoggingConfiguration.Level, 'ERROR');
  assert.equal(sm.LoggingConfiguration.IncludeExecutionData, true);
});

test('every checkov suppression carries a reason', () => {
  for (const [id, r] of Object.entries(json.Resources)) {
    const skips = ((r.Metadata?.checkov as any)?.skip ?? []) as { id: string; comment: string }[];
    for (const s of skips) assert.ok(/^CKV2?_AWS_\d+$/.test(s.id) && s.comment.length > 20, `${id}: ${JSON.stringify(s)}`);
  }
});

/** Every (action, rendered resource) pair the role of a function is allowed. */
const allowedPairs = (name: keyof typeof stack.functions) =>
  identity
    .filter((s) => s.roles.includes(roleOf(name)) && s.statement.Effect === 'Allow')
    .flatMap((s) => asArray(s.statement.Action).flatMap((a) => asArray(s.statement.Resource).map((r) => `${a} ${render(r)}`)));
const table = (prefix: string) => Object.keys(json.Resources).find((k) => k.startsWith(prefix) && json.Resources[k].Type === 'AWS::DynamoDB::Table')!;

test('waits table: check-job arms (Put/Get/Delete), job-events completes (Get/Delete/Query), the sweep scans (Scan/Get/Delete); nobody else', () => {
  const waits = table('Waits');
  const on = (name: keyof typeof stack.functions) =>
    allowedPairs(name)
      .filter((p) => p.includes(`{${waits}.Arn}`))
      .map((p) => p.split(' ')[0])
      .sort();
  assert.deepEqual(on('check-job'), ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem']);
  assert.deepEqual(on('job-events'), ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Query']);
  assert.deepEqual(on('reap-instances'), ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Scan']);
  for (const n of ['size-job', 'launch-instance', 'terminate-instance', 'record-run'] as const) assert.deepEqual(on(n), [], n);
  // The table itself: it has no index, and no statement names one.
  for (const s of identity) {
    for (const r of asArray(s.statement.Resource).map(render)) if (r.includes(`{${waits}.Arn}`)) assert.equal(r, `{${waits}.Arn}`, s.holder);
  }
  assert.ok(!identity.some((s) => s.roles.includes(instanceRoleId) && render(s.statement.Resource).includes(waits)), 'the instance never sees the tokens');
});

test('task tokens: exactly check-job, job-events and the sweep may SendTask*, only on this state machine; no other states:* but start-scheduled\'s StartExecution', () => {
  const smId = logicalId(stack.stateMachine);
  const taskActions = ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'];
  const expected = new Set(['check-job', 'job-events', 'reap-instances'].map((n) => roleOf(n as never)));
  for (const a of taskActions) {
    const g = grants(a);
    assert.deepEqual(new Set(g.flatMap((s) => s.roles)), expected, a);
    for (const s of g) {
      assert.deepEqual(asArray(s.statement.Resource), [{ Ref: smId }], `${s.holder}: ${a} on ${render(s.statement.Resource)}`);
      assert.equal(s.statement.Condition, undefined);
    }
  }
  // start-scheduled (the job schedules' target) is the stack's only starter of executions.
  let starts = 0;
  for (const s of identity) {
    for (const a of asArray(s.statement.Action).filter((x) => x.startsWith('states:'))) {
      if (taskActions.includes(a)) continue;
      assert.equal(a, 'states:StartExecution', `${s.holder}: ${a}`);
      assert.deepEqual(s.roles, [roleOf('start-scheduled' as never)], `${s.holder}: StartExecution`);
      assert.deepEqual(asArray(s.statement.Resource), [{ Ref: smId }]);
      starts++;
    }
  }
  assert.equal(starts, 1, 'one StartExecution grant');
  assert.ok(!resourcesOfType(json, 'AWS::IAM::Role').some(([, r]) => JSON.stringify(r.AssumeRolePolicyDocument).includes('events.amazonaws.com')), 'no role for EventBridge to start executions with');
  // Not in a role's default policy: check-job's function DependsOn that policy, and the state
  // machine substitutes check-job's ARN, so the state machine ARN there would be a cycle.
  const holders = new Set(grants('states:SendTaskSuccess').map((s) => s.holder));
  assert.equal(holders.size, 1);
  const [holder] = holders;
  assert.ok(!holder.includes('DefaultPolicy'), holder);
  for (const [id] of resourcesOfType(json, 'AWS::Lambda::Function')) {
    assert.ok(!asArray((json.Resources[id] as { DependsOn?: string | string[] }).DependsOn).includes(holder), `${id} depends on ${holder}`);
  }
});

test('job-events: exactly its contract grants (no launch, no tagging, no role passing, no scans)', () => {
  const pairs = allowedPairs('job-events').map((p) => p.replace(/\{(Runs|Capacity|Waits|Data|DataKey|StateMachine)[0-9A-F]{8}(\.Arn)?\}/g, '<$1$2>'));
  const capacityWrite = ['GetItem', 'BatchGetItem', 'Query', 'Scan', 'ConditionCheckItem', 'DescribeTable', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem']
    .flatMap((a) => [`dynamodb:${a} <Capacity.Arn>`, `dynamodb:${a} <Capacity.Arn>/index/*`]);
  const expected = [
    'xray:PutTraceSegments *',
    'xray:PutTelemetryRecords *',
    'dynamodb:GetItem <Waits.Arn>',
    'dynamodb:DeleteItem <Waits.Arn>',
    'dynamodb:Query <Waits.Arn>',
    'dynamodb:GetItem <Runs.Arn>',
    'dynamodb:PutItem <Runs.Arn>',
    ...capacityWrite,
    ...['Decrypt', 'DescribeKey', 'Encrypt', 'GenerateDataKey', 'ReEncryptFrom', 'ReEncryptTo'].map((a) => `kms:${a} <DataKey.Arn>`),
    's3:ListBucket <Data.Arn>',
    's3:GetObject <Data.Arn>/runs/*',
    'ec2:DescribeInstances *',
    'ec2:DescribeInstanceStatus *',
    'ec2:TerminateInstances arn:{AWS::Partition}:ec2:{AWS::Region}:{AWS::AccountId}:instance/*',
    'states:SendTaskSuccess <StateMachine>',
    'states:SendTaskFailure <StateMachine>',
    'states:SendTaskHeartbeat <StateMachine>',
  ];
  assert.deepEqual(pairs.sort(), expected.sort());
  const actions = new Set(pairs.map((p) => p.split(' ')[0]));
  for (const a of ['ec2:RunInstances', 'ec2:CreateTags', 'iam:PassRole', 'iam:CreateServiceLinkedRole', 'ssm:GetParameters', 'lambda:InvokeFunction', 'states:StartExecution', 'states:StopExecution', 's3:PutObject', 'dynamodb:Scan']) {
    if (a === 'dynamodb:Scan') {
      assert.ok(!pairs.some((p) => p.startsWith('dynamodb:Scan <Waits') || p.startsWith('dynamodb:Scan <Runs')), 'job-events queries one run; it never scans waits or runs');
      continue;
    }
    assert.ok(!actions.has(a), `job-events may ${a}`);
  }
});

test('refresh-prices: reads the spot market and writes the price overlay, nothing else; size-job only reads the overlay', () => {
  const norm = (n: (typeof FUNCTION_NAMES)[number]) => allowedPairs(n).map((p) => p.replace(/\{(Data|DataKey)[0-9A-F]{8}(\.Arn)?\}/g, '<$1$2>'));
  assert.deepEqual(norm('refresh-prices').sort(), [
    'xray:PutTraceSegments *',
    'xray:PutTelemetryRecords *',
    'ec2:DescribeSpotPriceHistory *',
    'ec2:DescribeAvailabilityZones *',
    'pricing:GetProducts *',
    's3:GetObject <Data.Arn>/prices/*',
    's3:PutObject <Data.Arn>/prices/*',
  ].sort());
  const sizeS3 = norm('size-job').filter((p) => p.startsWith('s3:'));
  assert.deepEqual(sizeS3, ['s3:GetObject <Data.Arn>/prices/*']);
  // Only the refresher and the recorder read prices; the launcher no longer has the grant it never used.
  for (const n of FUNCTION_NAMES) {
    const reads = allowedPairs(n).some((p) => p.startsWith('ec2:DescribeSpotPriceHistory'));
    assert.equal(reads, n === 'refresh-prices' || n === 'record-run', `${n}: DescribeSpotPriceHistory`);
  }
});
