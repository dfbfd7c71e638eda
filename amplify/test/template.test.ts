// The properties the issue names, on the synthesized templates of a prod
// deployment (branch main) built for arm64 with an alarm email:
// encryption, PITR, CORS, lifecycle, sign-in clients, the function, IAM
// scoped to named resources, alarms, region eu-central-1.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { Match } from 'aws-cdk-lib/assertions';

import { bucketDef, readMetrics, readSchema } from '../contract.js';
import { CORS_HEADERS, LIFECYCLE_DAYS, ORPHANED_TAG } from '../storage/resource.js';
import { synthesize } from './support.js';

let s: Awaited<ReturnType<typeof synthesize>>;
const schema = readSchema();
// The tag cloud-lambda sets on every image object (a test there reads it back from S3).
const KIND_TAG = bucketDef(schema, 'blobs').kindTag!;
type Res = { Type: string; Properties: any; DeletionPolicy?: string };
const all = (t: { findResources(type: string): Record<string, unknown> }, type: string) =>
  Object.values(t.findResources(type)) as Res[];

before(async () => {
  s = await synthesize({
    branch: 'main',
    appId: 'd3prod',
    arch: 'arm64',
    env: { ATELIER_LAMBDA_ARCH: 'arm64', ATELIER_ALARM_EMAIL: 'ops@example.com' },
  });
});

test('prod, and only deployable in eu-central-1', () => {
  assert.equal(s.settings.kind, 'prod');
  const rule = s.root.toJSON().Rules.OnlyInEuCentral1;
  assert.deepEqual(rule.Assertions[0].Assert, { 'Fn::Equals': [{ Ref: 'AWS::Region' }, 'eu-central-1'] });
});

describe('auth', () => {
  test('the pool: users made by the operator, no guests, kept', () => {
    s.auth.hasResource('AWS::Cognito::UserPool', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
        DeletionProtection: 'ACTIVE',
        UsernameAttributes: ['email'],
      }),
    });
    s.auth.hasResourceProperties('AWS::Cognito::IdentityPool', { AllowUnauthenticatedIdentities: false });
    s.auth.hasResourceProperties('AWS::Cognito::UserPoolDomain', { Domain: 'atelier-d3prod-main' });
  });

  test('desktop: authorization code (PKCE) to a loopback redirect, no secret, refresh only', () => {
    s.auth.hasResourceProperties('AWS::Cognito::UserPoolClient', {
      ClientName: 'atelier-d3prod-main-desktop',
      AllowedOAuthFlowsUserPoolClient: true,
      AllowedOAuthFlows: ['code'],
      AllowedOAuthScopes: ['openid', 'email', 'profile'],
      CallbackURLs: ['http://localhost:47615/callback'],
      GenerateSecret: false,
      ExplicitAuthFlows: ['ALLOW_REFRESH_TOKEN_AUTH'],
      SupportedIdentityProviders: ['COGNITO'],
      EnableTokenRevocation: true,
    });
  });

  test('daemon: USER_PASSWORD_AUTH and refresh, no OAuth, no secret', () => {
    s.auth.hasResourceProperties('AWS::Cognito::UserPoolClient', {
      ClientName: 'atelier-d3prod-main-daemon',
      ExplicitAuthFlows: ['ALLOW_USER_PASSWORD_AUTH', 'ALLOW_REFRESH_TOKEN_AUTH'],
      AllowedOAuthFlowsUserPoolClient: false,
      AllowedOAuthFlows: Match.absent(),
      GenerateSecret: false,
    });
  });

  test('no client uses the implicit grant or redirects anywhere but loopback', () => {
    for (const c of all(s.auth, 'AWS::Cognito::UserPoolClient')) {
      assert.ok(!(c.Properties.AllowedOAuthFlows ?? []).includes('implicit'), c.Properties.ClientName);
      for (const url of c.Properties.CallbackURLs ?? []) assert.match(url, /^http:\/\/localhost:\d+\//);
    }
  });
});

describe('storage', () => {
  test('KMS with rotation, kept in prod', () => {
    s.data.hasResource('AWS::KMS::Key', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({ EnableKeyRotation: true }),
    });
  });

  test('every bucket: the KMS key, public access blocked, versioned, kept, not emptied', () => {
    const buckets = all(s.data, 'AWS::S3::Bucket');
    assert.equal(buckets.length, schema.buckets.length);
    for (const b of buckets) {
      const p = b.Properties;
      const sse = p.BucketEncryption.ServerSideEncryptionConfiguration[0];
      assert.equal(sse.ServerSideEncryptionByDefault.SSEAlgorithm, 'aws:kms');
      assert.match(JSON.stringify(sse.ServerSideEncryptionByDefault.KMSMasterKeyID), /StorageKey/);
      assert.equal(sse.BucketKeyEnabled, true);
      assert.deepEqual(p.PublicAccessBlockConfiguration, {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      assert.equal(p.VersioningConfiguration.Status, 'Enabled');
      assert.equal(b.DeletionPolicy, 'Retain');
      const rules = p.LifecycleConfiguration.Rules;
      assert.ok(rules.some((r: any) => r.AbortIncompleteMultipartUpload?.DaysAfterInitiation === LIFECYCLE_DAYS.abortIncompleteUpload));
      assert.ok(rules.some((r: any) => r.NoncurrentVersionExpiration?.NoncurrentDays === LIFECYCLE_DAYS.noncurrentVersions));
    }
    s.data.resourceCountIs('Custom::S3AutoDeleteObjects', 0);
  });

  test('every bucket refuses plain HTTP and TLS before 1.2', () => {
    const policies = all(s.data, 'AWS::S3::BucketPolicy');
    assert.equal(policies.length, schema.buckets.length);
    for (const p of policies) {
      const denies = p.Properties.PolicyDocument.Statement.filter((st: any) => st.Effect === 'Deny');
      assert.ok(denies.some((d: any) => d.Condition?.Bool?.['aws:SecureTransport'] === 'false'));
      assert.ok(denies.some((d: any) => d.Condition?.NumericLessThan?.['s3:TlsVersion'] === 1.2));
    }
  });

  test('images: CORS for presigned PUT and GET, derivatives to IA, orphaned thumbnails expire', () => {
    s.data.hasResourceProperties('AWS::S3::Bucket', {
      BucketName: 'atelier-d3prod-main-blobs',
      CorsConfiguration: {
        CorsRules: [
          Match.objectLike({
            AllowedMethods: Match.arrayWith(['PUT', 'GET']),
            AllowedHeaders: Match.arrayWith(['content-type', 'x-amz-checksum-sha256']),
            AllowedOrigins: ['http://localhost:*', 'http://127.0.0.1:*'],
          }),
        ],
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Id: 'derivatives-to-infrequent-access',
            TagFilters: [{ Key: KIND_TAG, Value: 'derivatives' }],
            Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: LIFECYCLE_DAYS.derivativesToInfrequentAccess }],
          }),
          Match.objectLike({
            Id: 'expire-orphaned-thumbnails',
            TagFilters: [
              { Key: KIND_TAG, Value: 'thumbnails' },
              { Key: ORPHANED_TAG, Value: 'true' },
            ],
            ExpirationInDays: LIFECYCLE_DAYS.orphanedThumbnails,
          }),
        ]),
      },
    });
    assert.ok(CORS_HEADERS.includes('x-amz-checksum-sha256'));
    // The rules name kinds the schema has, by the tag the backend sets
    // (the presigned upload signs x-amz-tagging, so browsers may send it).
    for (const kind of ['derivatives', 'thumbnails']) assert.ok(kind in bucketDef(schema, 'blobs').keys, kind);
    assert.ok(CORS_HEADERS.includes('x-amz-tagging'));
    // The documents bucket is the server's own: no browser reaches it.
    s.data.hasResourceProperties('AWS::S3::Bucket', {
      BucketName: 'atelier-d3prod-main-docs',
      CorsConfiguration: Match.absent(),
    });
  });
});

describe('data', () => {
  test('every table: on-demand, encrypted, deletion-protected and kept in prod', () => {
    const tables = all(s.data, 'AWS::DynamoDB::GlobalTable');
    assert.equal(tables.length, schema.tables.length);
    for (const t of tables) {
      assert.equal(t.Properties.BillingMode, 'PAY_PER_REQUEST');
      assert.equal(t.Properties.SSESpecification.SSEEnabled, true);
      assert.equal(t.Properties.Replicas[0].DeletionProtectionEnabled, true);
      assert.equal(t.DeletionPolicy, 'Retain');
    }
  });
});

/**
 * The role's statements: its inline policy and, past the inline size
 * limit, the policies CDK splits off (customer managed, attached to the
 * role, as scoped as the rest).
 */
const roleStatements = () =>
  [...all(s.api, 'AWS::IAM::Policy'), ...all(s.api, 'AWS::IAM::ManagedPolicy')].flatMap(
    (p) => p.Properties.PolicyDocument.Statement,
  );

describe('compute', () => {
  test('the Rust binary on provided.al2023 (arm64 here), reserved concurrency, jobs retried', () => {
    s.api.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'atelier-d3prod-main-api',
      Runtime: 'provided.al2023',
      Handler: 'bootstrap',
      Architectures: ['arm64'],
      ReservedConcurrentExecutions: 50,
      Timeout: 900,
    });
    s.api.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { MaximumRetryAttempts: 2 });
  });

  test('a scheduled event purges the trash once a day', () => {
    s.api.hasResourceProperties('AWS::Events::Rule', {
      Name: 'atelier-d3prod-main-purge',
      ScheduleExpression: 'rate(1 day)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ RetryPolicy: { MaximumRetryAttempts: 2 } })],
    });
    s.api.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
    });
  });

  test('logs kept 90 days in its own group', () => {
    s.api.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: '/aws/lambda/atelier-d3prod-main-api',
      RetentionInDays: 90,
    });
  });

  test('IAM: every statement names its resources, none is "*"', () => {
    s.api.resourceCountIs('AWS::IAM::Role', 1);
    const role = all(s.api, 'AWS::IAM::Role')[0];
    assert.equal(role.Properties.ManagedPolicyArns, undefined, 'no managed policy (they grant on "*")');
    const statements = roleStatements();
    const actions = new Set<string>();
    for (const st of statements) {
      const resources = [st.Resource].flat();
      for (const r of resources) assert.notEqual(r, '*', JSON.stringify(st.Action));
      for (const a of [st.Action].flat()) actions.add(a.split(':')[0]);
    }
    assert.deepEqual([...actions].sort(), ['dynamodb', 'kms', 'lambda', 'logs', 's3', 'ssm']);
  });

  test('IAM: only its tables, its buckets under their prefixes, its key, its secrets, itself', () => {
    const statements = roleStatements();
    const of = (service: string) =>
      statements.filter((st) => [st.Action].flat().some((a: string) => a.startsWith(`${service}:`)));
    const text = (service: string) => JSON.stringify(of(service).map((st) => st.Resource));
    for (const t of schema.tables) {
      assert.match(text('dynamodb'), new RegExp(`Tables${t.name.replace(/_(.)/g, (_, c) => c.toUpperCase()).replace(/^./, (c) => c.toUpperCase())}`), t.name);
    }
    assert.match(text('s3'), /BlobsBucket.*\/users\/\*/);
    // The backend tags every image object it writes (x-amz-tagging on PutObject).
    const s3Actions = of('s3').flatMap((st) => [st.Action].flat());
    assert.ok(s3Actions.includes('s3:PutObjectTagging'), JSON.stringify(s3Actions));
    assert.match(text('s3'), /DocsBucket.*\/docs\/\*/);
    assert.match(text('kms'), /StorageKey/);
    for (const st of of('ssm')) {
      for (const r of st.Resource) assert.match(JSON.stringify(r), /:parameter\/amplify\/(shared\/)?d3prod\//);
    }
    assert.equal(of('ssm')[0].Resource.length, 6);
    assert.match(text('lambda'), /:function:atelier-d3prod-main-api"/);
    assert.deepEqual(of('lambda').flatMap((st) => [st.Action].flat()), ['lambda:InvokeFunction']);
  });
});

describe('alarms', () => {
  const alarms = () => all(s.alarmsTemplate, 'AWS::CloudWatch::Alarm').map((a) => a.Properties);
  const named = (suffix: string) => alarms().find((a) => a.AlarmName === `atelier-d3prod-main-${suffix}`);

  test('all notify the topic, which mails the operator', () => {
    s.alarmsTemplate.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    for (const a of alarms()) {
      assert.match(JSON.stringify(a.AlarmActions), /AlarmsTopic/, a.AlarmName);
      assert.match(JSON.stringify(a.OKActions), /AlarmsTopic/, a.AlarmName);
      assert.equal(a.TreatMissingData, 'notBreaching');
    }
  });

  test('Lambda errors and throttles', () => {
    assert.equal(named('lambda-errors')?.MetricName, 'Errors');
    assert.equal(named('lambda-throttles')?.MetricName, 'Throttles');
    assert.equal(named('lambda-errors')?.Namespace, 'AWS/Lambda');
  });

  test('API 5xx rate', () => {
    const a = named('api-5xx-rate')!;
    const metrics = a.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric);
    assert.deepEqual(metrics.map((m: any) => m.MetricName).sort(), ['5xx', 'Count']);
    assert.ok(a.Metrics.some((m: any) => /100 \* errors/.test(m.Expression ?? '')));
  });

  test('DynamoDB throttles on every table', () => {
    for (const t of schema.tables) {
      const a = named(`dynamodb-throttles-${t.name}`);
      assert.ok(a, t.name);
      const names = a.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.MetricName);
      assert.deepEqual(names.sort(), ['ReadThrottleEvents', 'WriteThrottleEvents']);
    }
  });

  test("job failure rate and daily spend, from this deployment's EMF metrics", () => {
    const router = readMetrics();
    const fn = all(s.api, 'AWS::Lambda::Function')[0].Properties.Environment.Variables;
    // The dimension the function writes (ATELIER_METRICS_DEPLOYMENT) is the one the alarms select.
    const dimensions = [{ Name: router.dimension, Value: fn.ATELIER_METRICS_DEPLOYMENT }];
    assert.equal(fn.ATELIER_METRICS_DEPLOYMENT, 'atelier-d3prod-main-');
    assert.equal(fn.ATELIER_EMF_METRICS, 'true');

    const rate = named('job-failure-rate')!;
    const stats = rate.Metrics.filter((m: any) => m.MetricStat);
    assert.deepEqual(
      stats.map((m: any) => [m.Id, m.MetricStat.Metric.Namespace, m.MetricStat.Metric.MetricName, m.MetricStat.Period, m.MetricStat.Stat]).sort(),
      [
        ['failures', 'Atelier', 'JobFailures', 3600, 'Sum'],
        ['finished', 'Atelier', 'JobsFinished', 3600, 'Sum'],
      ],
    );
    for (const m of stats) assert.deepEqual(m.MetricStat.Metric.Dimensions, dimensions);
    const expression = rate.Metrics.find((m: any) => m.Expression).Expression;
    assert.equal(expression, 'IF(FILL(failures, 0) >= 5, 100 * FILL(failures, 0) / FILL(finished, 1), 0)');
    assert.deepEqual([rate.Threshold, rate.ComparisonOperator], [20, 'GreaterThanOrEqualToThreshold']);

    const spend = named('daily-spend')!;
    assert.deepEqual(
      [spend.Namespace, spend.MetricName, spend.Period, spend.Statistic, spend.Threshold],
      ['Atelier', 'SpendNanoUsd', 86400, 'Sum', 50e9],
    );
    assert.deepEqual(spend.Dimensions, dimensions);
    for (const name of ['JobFailures', 'JobsFinished', 'SpendNanoUsd']) assert.ok(router.names.includes(name), name);
  });
});

test('the stack tells clients where to go (amplify_outputs.json custom.atelier)', () => {
  const outputs = s.root.toJSON().Outputs;
  const custom = JSON.stringify(outputs.customOutputs.Value);
  for (const key of ['apiUrl', 'authUrl', 'desktopClientId', 'daemonClientId', 'userPoolId']) {
    assert.match(custom, new RegExp(key));
  }
});
