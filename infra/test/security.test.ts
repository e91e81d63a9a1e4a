// Security properties of the synthesized template, asserted one by one (not a snapshot).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Match } from 'aws-cdk-lib/assertions';
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

test('tables: on-demand, point-in-time recovery, KMS encryption; capacity has a TTL', () => {
  const tables = resourcesOfType(json, 'AWS::DynamoDB::Table');
  assert.equal(tables.length, 3);
  for (const [id, t] of tables) {
    assert.equal(t.BillingMode, 'PAY_PER_REQUEST', id);
    assert.deepEqual(t.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true }, id);
    const sse = t.SSESpecification as any;
    assert.equal(sse.SSEEnabled, true, id);
    assert.equal(sse.SSEType, 'KMS', id);
    assert.ok(sse.KMSMasterKeyId, id);
  }
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
  const expected = new Set(['launch-instance', 'terminate-instance', 'reap-instances'].map((n) => roleOf(n as never)));
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

test('every function runs provided.al2023', () => {
  const fns = resourcesOfType(json, 'AWS::Lambda::Function');
  assert.equal(fns.length, 6);
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
  // check-job writes the running attempt's heartbeat (the reaper's "abandoned" rule reads it).
  assert.deepEqual(writers(id('Runs')), new Set([roleOf('launch-instance'), roleOf('check-job'), roleOf('record-run')]));
  const heartbeat = grants('dynamodb:PutItem').filter(
    (s) => s.roles.includes(roleOf('check-job')) && asArray(s.statement.Resource).some((r) => render(r).includes(id('Runs'))),
  );
  assert.equal(heartbeat.length, 1);
  assert.deepEqual(asArray(heartbeat[0].statement.Action), ['dynamodb:PutItem'], 'check-job: PutItem only, no update or delete');
  assert.deepEqual(asArray(heartbeat[0].statement.Resource).map(render), [`{${id('Runs')}.Arn}`], 'runs table only, not its index');
});

test('the launcher may create the Spot service-linked role, and only that one', () => {
  const slr = grants('iam:CreateServiceLinkedRole');
  assert.equal(slr.length, 1);
  assert.deepEqual(slr[0].roles, [roleOf('launch-instance')]);
  assert.deepEqual(slr[0].statement.Condition, { StringEquals: { 'iam:AWSServiceName': 'spot.amazonaws.com' } });
  assert.ok(render(slr[0].statement.Resource).endsWith(':role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot'));
  assert.equal(resourcesOfType(json, 'AWS::IAM::ServiceLinkedRole').length, 0, 'a declared SLR fails in accounts that have one');
});

test('the launcher may read the resolve:ssm AMI parameter, and only that parameter', () => {
  const get = grants('ssm:GetParameters');
  assert.equal(get.length, 1);
  assert.deepEqual(get[0].roles, [roleOf('launch-instance')]);
  assert.deepEqual(
    asArray(get[0].statement.Resource).map(render),
    ['arn:{AWS::Partition}:ssm:{AWS::Region}::parameter/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64'],
  );
  const { json: plain } = synth({ 'spotfit:imageId': 'ami-0123456789abcdef0' });
  assert.equal(statements(plain).filter((s) => asArray(s.statement.Action).includes('ssm:GetParameters')).length, 0);
});

test('alarms: failed executions, every function\'s errors, the reaper, the dead-letter queue; all to one topic', () => {
  const alarms = resourcesOfType(json, 'AWS::CloudWatch::Alarm').map(([, p]) => p as any);
  const metric = (ns: string, name: string) => alarms.filter((a) => a.Namespace === ns && a.MetricName === name);
  assert.ok(metric('AWS/States', 'ExecutionsFailed').length === 1);
  assert.equal(metric('AWS/Lambda', 'Errors').length, 6);
  assert.ok(alarms.some((a) => a.MetricName === 'Errors' && render(a.Dimensions).includes(logicalId(stack.functions['reap-instances'] as never))));
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
