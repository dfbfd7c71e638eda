// The synthesized infrastructure agrees with the Rust side: tables and
// buckets as cloud-lambda/aws-schema.json says, every route of the
// Router's OpenAPI document on the HTTP API, the Lambda told the names
// the backend reads. Synthesized as a preview branch deployment.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { Match } from 'aws-cdk-lib/assertions';

import { environmentDifferences, NOT_ROUTED, SECRET_NAMES, UNAUTHENTICATED_ROUTES } from '../compute/resource.js';
import { readLambdaContract, readRoutes, readSchema, type AwsSchema } from '../contract.js';
import { apiRoutes, routeDifferences, tableDifferences } from './checks.js';
import { synthesize } from './support.js';

let s: Awaited<ReturnType<typeof synthesize>>;
const schema = readSchema();
const routes = readRoutes();

before(async () => {
  s = await synthesize({ branch: 'feature/sign-in', appId: 'd2preview' });
});

describe('tables: exactly as aws-schema.json says', () => {
  test('names, keys, attribute types, indexes, TTL, on-demand and PITR agree', () => {
    assert.equal(s.settings.prefix, 'atelier-d2preview-feature-sign-in-');
    assert.deepEqual(tableDifferences(s.data, schema, s.settings.prefix), []);
  });

  test('a table whose key schema differs from the Rust side is caught', () => {
    const mutate = (f: (m: AwsSchema) => void) => {
      const m = structuredClone(schema);
      f(m);
      return tableDifferences(s.data, m, s.settings.prefix);
    };
    const log = (m: AwsSchema) => m.tables.find((t) => t.name === 'log')!;
    const ops = (m: AwsSchema) => m.tables.find((t) => t.name === 'operations')!;
    for (const [what, change, expect] of [
      ['sort key type', (m: AwsSchema) => (log(m).keys.sort!.type = 'S'), /log: key schema|attribute types/],
      ['sort key name', (m: AwsSchema) => (log(m).keys.sort!.name = 'seq'), /log: key schema/],
      ['a new table', (m: AwsSchema) => m.tables.push({ ...log(m), name: 'listings' }), /table .*listings is missing/],
      ['an index', (m: AwsSchema) => (ops(m).globalSecondaryIndexes![0].projection = 'ALL'), /projection differs/],
      ['TTL', (m: AwsSchema) => (log(m).ttlAttribute = 'expires_at'), /log: TTL/],
      ['PITR', (m: AwsSchema) => (log(m).pointInTimeRecovery = false), /log: point-in-time recovery/],
    ] as const) {
      const diffs = mutate(change);
      assert.ok(diffs.some((d) => expect.test(d)), `${what}: ${JSON.stringify(diffs)}`);
    }
  });
});

describe('buckets: the schema names them', () => {
  test('one bucket per schema bucket, named with the prefix', () => {
    for (const b of schema.buckets) {
      s.data.hasResourceProperties('AWS::S3::Bucket', { BucketName: `${s.settings.prefix}${b.name}` });
    }
    assert.equal(Object.keys(s.data.findResources('AWS::S3::Bucket')).length, schema.buckets.length);
  });
});

describe('HTTP API: every route of the Router', () => {
  test('every operation of openapi.json is routed, or excused with a reason', () => {
    assert.deepEqual(routeDifferences(s.api, routes, NOT_ROUTED), []);
    for (const reason of Object.values(NOT_ROUTED)) assert.ok(reason.length > 20);
  });

  test('a route the HTTP API lacks is caught', () => {
    const extra = [...routes, { method: 'DELETE', path: '/assets/{id}', bearer: true }];
    assert.deepEqual(routeDifferences(s.api, extra, NOT_ROUTED), [
      'DELETE /assets/{id} is not routed by the HTTP API',
    ]);
    const stale = { ...NOT_ROUTED, 'GET /v1/blobs/{sha256}': 'gone' };
    assert.match(routeDifferences(s.api, routes, stale).join(), /excused from routing but is not in the OpenAPI/);
  });

  test('the JWT authorizer guards every route but the webhook, and the catch-all', () => {
    const made = apiRoutes(s.api);
    for (const [key, auth] of made) {
      assert.equal(auth, UNAUTHENTICATED_ROUTES.includes(key) ? 'NONE' : 'JWT', key);
    }
    assert.equal(made.get('POST /replicate/webhook'), 'NONE');
    assert.equal(made.get('$default'), 'JWT');
    // Every route the OpenAPI document marks as needing a bearer token is behind it.
    for (const r of routes.filter((r) => r.bearer)) assert.equal(made.get(`${r.method} ${r.path}`), 'JWT');
  });

  test('the authorizer trusts the pool, and only the desktop and daemon clients', () => {
    s.api.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      IdentitySource: ['$request.header.Authorization'],
      JwtConfiguration: {
        Issuer: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith(['https://cognito-idp.eu-central-1.amazonaws.com/'])] }),
        Audience: [Match.objectLike({ Ref: Match.stringLikeRegexp('DesktopClient') }), Match.objectLike({ Ref: Match.stringLikeRegexp('DaemonClient') })],
      },
    });
  });
});

describe('the Lambda is told what the backend reads', () => {
  test('its prefix, issuer, audiences, public URL and secret parameters', () => {
    const fn = Object.values(s.api.findResources('AWS::Lambda::Function'))[0] as any;
    const env = fn.Properties.Environment.Variables;
    assert.equal(env.ATELIER_BACKEND, 'aws');
    assert.equal(env.ATELIER_AWS_PREFIX, s.settings.prefix);
    assert.equal(env.ATELIER_EMF_METRICS, 'true');
    assert.match(JSON.stringify(env.ATELIER_COGNITO_ISSUER), /cognito-idp\.eu-central-1\.amazonaws\.com/);
    assert.match(JSON.stringify(env.ATELIER_COGNITO_CLIENT_IDS), /DesktopClient.*DaemonClient/);
    assert.match(JSON.stringify(env.ATELIER_PUBLIC_URL), /ApiEndpoint/);
    const secrets = JSON.parse(env.ATELIER_SECRET_PARAMETERS);
    assert.deepEqual(Object.keys(secrets).sort(), ['GEMINI_API_KEY', 'REPLICATE_API_TOKEN', 'REPLICATE_WEBHOOK_SECRET']);
    for (const [name, [branch, shared]] of Object.entries(secrets) as [string, string[]][]) {
      assert.match(branch, new RegExp(`^/amplify/d2preview/featuresignin-branch-[0-9a-f]{10}/${name}$`));
      assert.equal(shared, `/amplify/shared/d2preview/${name}`);
    }
  });

  test('only variables cloud-lambda reads, and exactly the secrets it takes from SSM', () => {
    const lambda = readLambdaContract();
    const env = (Object.values(s.api.findResources('AWS::Lambda::Function'))[0] as any).Properties.Environment.Variables;
    assert.deepEqual(environmentDifferences(env, SECRET_NAMES, lambda), []);
    assert.deepEqual([...lambda.secretNames].sort(), Object.keys(JSON.parse(env[lambda.secretParametersVariable])).sort());
    assert.ok(lambda.variables.length > 20, JSON.stringify(lambda.variables));
  });

  test('a variable or secret the Rust side does not know is caught', () => {
    const lambda = readLambdaContract();
    const env = (Object.values(s.api.findResources('AWS::Lambda::Function'))[0] as any).Properties.Environment.Variables;
    const without = (name: string) => ({ ...lambda, variables: lambda.variables.filter((v) => v !== name) });
    assert.deepEqual(environmentDifferences(env, SECRET_NAMES, without('ATELIER_EMF_METRICS')), [
      'ATELIER_EMF_METRICS is set for the function, but cloud-lambda/src/lambda/config.rs does not read it',
    ]);
    assert.deepEqual(
      environmentDifferences(env, [...SECRET_NAMES, 'OPENAI_API_KEY'], { ...lambda, secretNames: lambda.secretNames.slice(1) }),
      [
        `secret ${lambda.secretNames[0]} is not one the function reads from SSM`,
        'secret OPENAI_API_KEY is not one the function reads from SSM',
      ],
    );
    assert.deepEqual(environmentDifferences(env, SECRET_NAMES.slice(1), lambda), [
      `the function reads secret ${lambda.secretNames[0]} from SSM, but no Amplify secret holds it`,
    ]);
    assert.match(
      environmentDifferences(env, SECRET_NAMES, { ...lambda, secretParametersVariable: 'ATELIER_SECRETS' }).join(),
      /not told ATELIER_SECRETS/,
    );
  });
});

describe('a preview goes away with its branch', () => {
  test('tables, buckets and the key are destroyed, buckets emptied first', () => {
    for (const type of ['AWS::DynamoDB::GlobalTable', 'AWS::S3::Bucket', 'AWS::KMS::Key']) {
      for (const r of Object.values(s.data.findResources(type)) as any[]) {
        assert.equal(r.DeletionPolicy, 'Delete', type);
      }
    }
    s.data.resourceCountIs('Custom::S3AutoDeleteObjects', schema.buckets.length);
    s.data.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      Replicas: [Match.objectLike({ DeletionProtectionEnabled: false })],
    });
    s.auth.hasResource('AWS::Cognito::UserPool', { DeletionPolicy: 'Delete' });
    for (const r of Object.values(s.api.findResources('AWS::Logs::LogGroup')) as any[]) {
      assert.equal(r.DeletionPolicy, 'Delete');
    }
  });
});
