// Where each function's code comes from. A real deploy uses cargo-lambda's zips
// (target/lambda/<name>/bootstrap.zip, built by scripts/package-lambdas). Tests and CI synthesize
// with `-c spotfit:lambdaCode=placeholder`, which packs infra/placeholder-lambda instead: CI does
// not build release zips (about 11 minutes each), and the template is otherwise identical.
import * as fs from 'fs';
import * as path from 'path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { repoRoot, SpotfitConfig } from './config';

export const FUNCTION_NAMES = [
  'size-job',
  'launch-instance',
  'check-job',
  'terminate-instance',
  'record-run',
  'reap-instances',
  'job-events',
  'start-scheduled',
  'refresh-prices',
] as const;
export type FunctionName = (typeof FUNCTION_NAMES)[number];

export function lambdaCode(cfg: SpotfitConfig, name: FunctionName): lambda.Code {
  if (cfg.lambdaCode === 'placeholder') {
    return lambda.Code.fromAsset(path.join(repoRoot(), 'infra', 'placeholder-lambda'));
  }
  const zip = path.join(cfg.lambdaZipDir, name, 'bootstrap.zip');
  if (!fs.existsSync(zip)) {
    throw new Error(
      `missing ${zip}: build the functions with scripts/package-lambdas, ` +
        'or synthesize for tests only with -c spotfit:lambdaCode=placeholder',
    );
  }
  return lambda.Code.fromAsset(zip);
}
