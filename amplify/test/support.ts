/**
 * The one set-up of the synthesis tests: a deployment's context and
 * environment, a stand-in `bootstrap` (an ELF header for the chosen
 * architecture: synthesis only stages the file, it never runs it), then
 * `backend.ts` imported as the Amplify deployment engine would, and each
 * stack's CloudFormation template. Nothing contacts AWS.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';

export interface Deployment {
  /** `amplify-backend-name`: the branch. */
  branch: string;
  type?: 'branch' | 'sandbox';
  /** `amplify-backend-namespace`: the Amplify app id. */
  appId?: string;
  env?: Record<string, string>;
  arch?: 'x86_64' | 'arm64';
}

/** A directory holding a `bootstrap` that starts like a Linux executable for `arch`. */
export function fakeLambdaDir(arch: 'x86_64' | 'arm64' | 'not-elf'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'atelier-lambda-'));
  const header = Buffer.alloc(64);
  if (arch !== 'not-elf') {
    header.writeUInt32BE(0x7f454c46, 0);
    header.writeUInt16LE(arch === 'arm64' ? 0xb7 : 0x3e, 18);
  }
  writeFileSync(path.join(dir, 'bootstrap'), header, { mode: 0o755 });
  return dir;
}

/** Sets up `deployment` and imports the backend (once per process). */
export async function synthesize(deployment: Deployment) {
  process.env.CDK_CONTEXT_JSON = JSON.stringify({
    'amplify-backend-namespace': deployment.appId ?? 'd1atelier0test',
    'amplify-backend-name': deployment.branch,
    'amplify-backend-type': deployment.type ?? 'branch',
  });
  process.env.CDK_DEFAULT_ACCOUNT = '123456789012';
  process.env.CDK_DEFAULT_REGION = 'eu-central-1';
  process.env.CDK_OUTDIR = mkdtempSync(path.join(os.tmpdir(), 'atelier-cdk-out-'));
  process.env.ATELIER_LAMBDA_DIR = fakeLambdaDir(deployment.arch ?? 'x86_64');
  Object.assign(process.env, deployment.env ?? {});
  const b = await import('../backend.js');
  const template = (construct: { node: { scope?: unknown } } | Stack) =>
    Template.fromStack(Stack.of(construct as never));
  return {
    ...b,
    root: Template.fromStack(b.backend.stack),
    auth: Template.fromStack(Stack.of(b.backend.auth.resources.userPool)),
    data: template(b.tables),
    api: template(b.compute),
    alarmsTemplate: template(b.alarms),
  };
}
