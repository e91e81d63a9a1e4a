#!/usr/bin/env node
// The CDK app: one stack, configured by context (see infra/README.md).
import { App } from 'aws-cdk-lib';
import { loadConfig } from '../lib/config';
import { SpotfitStack } from '../lib/spotfit-stack';

const app = new App();
const stackName = (app.node.tryGetContext('spotfit:stackName') as string | undefined) ?? 'Spotfit';
new SpotfitStack(app, stackName, {
  config: loadConfig(app.node),
  description: 'spotfit: right-sized spot instances for batch jobs',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
