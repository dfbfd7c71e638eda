/**
 * Atelier's cloud side as one Amplify Gen 2 backend in eu-central-1: the
 * Cognito pool and its clients (auth/), the DynamoDB tables (data/) and
 * buckets (storage/) of `cloud-lambda/aws-schema.json`, the Rust Lambda
 * behind an HTTP API (compute/), and alarms (monitoring/). Each Amplify
 * branch deployment is one environment (prod for the branches in
 * `ATELIER_PROD_BRANCHES`, default `main`; preview for every other
 * branch); `ampx sandbox` makes a personal one. Settings: settings.ts.
 */

import { defineBackend, secret } from '@aws-amplify/backend';
import { Aws, CfnRule, Fn, Tags } from 'aws-cdk-lib';

import { auth, configureSignIn } from './auth/resource.js';
import { AtelierCompute, SECRET_NAMES, type SecretPaths } from './compute/resource.js';
import { readLambdaContract, readMetrics, readRoutes, readSchema } from './contract.js';
import { AtelierTables } from './data/resource.js';
import { AtelierAlarms } from './monitoring/resource.js';
import { type BackendId, readSettings, REGION } from './settings.js';
import { AtelierStorage } from './storage/resource.js';

export const backend = defineBackend({ auth });

// The deployment engine's context keys (@aws-amplify/platform-core's CDKContextKey).
const context = (key: string) => backend.stack.node.getContext(key) as string;
const backendId: BackendId = {
  namespace: context('amplify-backend-namespace'),
  name: context('amplify-backend-name'),
  type: context('amplify-backend-type') as BackendId['type'],
};
// The stacks are region-agnostic templates; CloudFormation refuses to
// deploy them anywhere but eu-central-1 (the issuer URL, the hosted UI
// and the guide all name it).
new CfnRule(backend.stack, 'OnlyInEuCentral1', {
  assertions: [
    {
      assert: Fn.conditionEquals(Aws.REGION, REGION),
      assertDescription: `Atelier deploys to ${REGION}: set AWS_REGION=${REGION}`,
    },
  ],
});

export const settings = readSettings(backendId);
const schema = readSchema();

const signIn = configureSignIn(backend.auth.resources, settings);

const dataStack = backend.createStack('atelier-data');
const tables = new AtelierTables(dataStack, 'Tables', schema, settings);
const storage = new AtelierStorage(dataStack, 'Storage', schema, settings);

const secrets = Object.fromEntries(
  SECRET_NAMES.map((name) => [name, secret(name).resolvePath(backendId)]),
) as SecretPaths;

const computeStack = backend.createStack('atelier-api');
const compute = new AtelierCompute(computeStack, 'Router', {
  settings,
  signIn,
  tables: tables.tables,
  storage,
  routes: readRoutes(),
  secrets,
  lambda: readLambdaContract(),
});

const alarmStack = backend.createStack('atelier-alarms');
export const alarms = new AtelierAlarms(alarmStack, 'Alarms', {
  settings,
  compute,
  tables: tables.tables,
  routerMetrics: readMetrics(),
});

Tags.of(backend.stack).add('atelier:environment', settings.kind);
Tags.of(backend.stack).add('atelier:prefix', settings.prefix);

// What the desktop app and the daemon are pointed at (amplify_outputs.json,
// `npx ampx generate outputs`).
backend.addOutput({
  custom: {
    atelier: {
      environment: settings.kind,
      region: REGION,
      apiUrl: compute.api.apiEndpoint,
      authUrl: signIn.authUrl,
      desktopClientId: signIn.desktop.userPoolClientId,
      daemonClientId: signIn.daemon.userPoolClientId,
      userPoolId: signIn.userPool.userPoolId,
      prefix: settings.prefix,
      alarmTopicArn: alarms.topic.topicArn,
    },
  },
});

export { compute, storage, tables, signIn };
