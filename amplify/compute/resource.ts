/**
 * The cloud: the Rust Router as one Lambda function (provided.al2023,
 * the `bootstrap` that `cargo lambda build` leaves) behind an API Gateway
 * HTTP API that routes every operation of `cloud-lambda/openapi.json` to
 * it. Every route but the Replicate webhook (which proves itself with a
 * Standard Webhooks signature) passes the JWT authorizer on the Cognito
 * pool first; the Router then checks the token again itself, including
 * `token_use`, which API Gateway does not.
 *
 * An EventBridge rule invokes the function once a day with its Scheduled
 * Event, which purges the trash past its retention period
 * (`cloud-lambda/src/lambda/schedule.rs`).
 *
 * The function's role may touch only its own tables and their indexes,
 * its two buckets (under their object prefixes), their KMS key, the SSM
 * parameters of its three secrets, its own log group, and invoking itself
 * (provider jobs run as asynchronous invocations of the same function, so
 * they outlive the request that queued them).
 *
 * {@link lambdaEnvironment} is the one list of what the function is told.
 */

import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpUserPoolAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

import type { SignIn } from '../auth/resource.js';
import type { LambdaContract, Route } from '../contract.js';
import { checkLambdaBinary, REGION, type Settings } from '../settings.js';
import type { AtelierStorage } from '../storage/resource.js';

/** Provider secrets, as Amplify secrets (SSM SecureString parameters) of the same names. */
export const SECRET_NAMES = ['GEMINI_API_KEY', 'REPLICATE_API_TOKEN', 'REPLICATE_WEBHOOK_SECRET'] as const;

/** The one route without the JWT authorizer: Replicate signs its deliveries. */
export const UNAUTHENTICATED_ROUTES = ['POST /replicate/webhook'];

/**
 * Operations of the Router the HTTP API does not route, and why. Anything
 * else in the OpenAPI document is routed (a test holds both lists to it).
 */
export const NOT_ROUTED: Record<string, string> = {
  'GET /v1/blob-transfer':
    "the embedded backend's signed transfer URLs; on AWS, transfer URLs point at S3",
  'PUT /v1/blob-transfer':
    "the embedded backend's signed transfer URLs; on AWS, transfer URLs point at S3",
};

/** How often the function purges the trash (its retention is days long). */
export const PURGE_EVERY = Duration.days(1);

/** Where the Lambda finds each secret: the branch's parameter first, then the app-wide one. */
export type SecretPaths = Record<(typeof SECRET_NAMES)[number], { branchSecretPath: string; sharedSecretPath: string }>;

export interface ComputeProps {
  settings: Settings;
  signIn: SignIn;
  tables: Record<string, dynamodb.TableV2>;
  storage: AtelierStorage;
  routes: Route[];
  secrets: SecretPaths;
  /** What the Rust function reads (`readLambdaContract`). */
  lambda: LambdaContract;
}

/** What the function is told, by environment variable (documented in amplify/README.md). */
export function lambdaEnvironment(p: {
  settings: Settings;
  issuer: string;
  audience: string[];
  publicUrl: string;
  secrets: SecretPaths;
  lambda: LambdaContract;
}): Record<string, string> {
  const parameters = Object.fromEntries(
    Object.entries(p.secrets).map(([name, s]) => [name, [s.branchSecretPath, s.sharedSecretPath]]),
  );
  return {
    ATELIER_BACKEND: 'aws',
    ATELIER_AWS_PREFIX: p.settings.prefix,
    ATELIER_COGNITO_ISSUER: p.issuer,
    ATELIER_COGNITO_CLIENT_IDS: p.audience.join(','),
    ATELIER_PUBLIC_URL: p.publicUrl,
    [p.lambda.secretParametersVariable]: JSON.stringify(parameters),
    ATELIER_EMF_METRICS: 'true',
    // The alarms select the Router's metrics by this dimension value.
    ATELIER_METRICS_DEPLOYMENT: metricsDeployment(p.settings),
    ATELIER_JOBS_PER_HOUR: p.settings.jobsPerHour,
    ATELIER_DAILY_SPEND_CAP_USD: p.settings.dailySpendCapUsd,
    RUST_LOG: 'info',
  };
}

/** The `Deployment` dimension of this environment's EMF metrics. */
export function metricsDeployment(settings: Settings): string {
  return settings.prefix;
}

/**
 * Where the function's environment and the Rust side disagree: a variable
 * the function never reads, or provider secrets other than the ones it
 * takes from SSM. Empty when they agree.
 */
export function environmentDifferences(
  env: Record<string, string>,
  secretNames: readonly string[],
  lambda: LambdaContract,
): string[] {
  const out: string[] = [];
  for (const name of Object.keys(env)) {
    if (!lambda.variables.includes(name)) {
      out.push(`${name} is set for the function, but cloud-lambda/src/lambda/config.rs does not read it`);
    }
  }
  if (!(lambda.secretParametersVariable in env)) {
    out.push(`the function is not told ${lambda.secretParametersVariable}, where its secrets are`);
  }
  for (const name of secretNames) {
    if (!lambda.secretNames.includes(name)) out.push(`secret ${name} is not one the function reads from SSM`);
  }
  for (const name of lambda.secretNames) {
    if (!secretNames.includes(name)) out.push(`the function reads secret ${name} from SSM, but no Amplify secret holds it`);
  }
  return out;
}

export class AtelierCompute extends Construct {
  readonly fn: lambda.Function;
  readonly api: apigw.HttpApi;
  readonly logGroup: logs.LogGroup;
  /** Route keys (`GET /assets/{id}`) to their routes. */
  readonly routes: Map<string, apigw.HttpRoute>;

  constructor(scope: Construct, id: string, props: ComputeProps) {
    super(scope, id);
    const { settings, signIn, tables, storage } = props;
    const stack = Stack.of(this);
    const functionName = `${settings.prefix}api`;
    const logRemoval = settings.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    checkLambdaBinary(settings.lambdaDir, settings.lambdaArch);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: settings.logRetentionDays as logs.RetentionDays,
      removalPolicy: logRemoval,
    });

    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Atelier ${settings.prefix}api: its tables, buckets, key, secrets and itself`,
    });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'OwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    // The API's URL is known once the API exists, and the function must
    // know it (Replicate's webhook URL): the API does not depend on the
    // function, its integration does, so there is no cycle.
    this.api = new apigw.HttpApi(this, 'Api', {
      apiName: `${settings.prefix}api`,
      description: 'Atelier: sync, REST and the Replicate webhook',
      createDefaultStage: false,
    });

    const environment = lambdaEnvironment({
      settings,
      issuer: signIn.issuer,
      audience: [signIn.desktop.userPoolClientId, signIn.daemon.userPoolClientId],
      publicUrl: this.api.apiEndpoint,
      secrets: props.secrets,
      lambda: props.lambda,
    });
    const disagreements = environmentDifferences(environment, SECRET_NAMES, props.lambda);
    if (disagreements.length) throw new Error(`the Lambda and cloud-lambda disagree: ${disagreements.join('; ')}`);

    this.fn = new lambda.Function(this, 'Function', {
      functionName,
      description: 'Atelier cloud Router (cloud-lambda), built by cargo lambda',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: settings.lambdaArch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(settings.lambdaDir),
      memorySize: settings.lambdaMemoryMb,
      // Requests end at API Gateway's 30 s; provider jobs (asynchronous
      // self-invocations) may take minutes.
      timeout: Duration.minutes(15),
      reservedConcurrentExecutions: settings.reservedConcurrency,
      role,
      logGroup: this.logGroup,
      environment,
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
    });

    // The trash: a Scheduled Event once a day (retried like a job).
    new events.Rule(this, 'PurgeSchedule', {
      ruleName: `${settings.prefix}purge`,
      description: 'Purges the Atelier trash past its retention period',
      schedule: events.Schedule.rate(PURGE_EVERY),
      targets: [new targets.LambdaFunction(this.fn, { retryAttempts: 2 })],
    });

    // Data: only its own tables (and their indexes), buckets and key.
    for (const table of Object.values(tables)) table.grantReadWriteData(role);
    for (const [name, bucket] of Object.entries(storage.buckets)) {
      bucket.grantReadWrite(role, `${storage.objectPrefixes[name]}*`);
    }
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ProviderSecrets',
        actions: ['ssm:GetParameters', 'ssm:GetParameter'],
        resources: Object.values(props.secrets).flatMap((s) =>
          [s.branchSecretPath, s.sharedSecretPath].map((p) =>
            stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: p.replace(/^\//, '') }),
          ),
        ),
      }),
    );
    // Provider jobs: asynchronous invocations of itself (by name, so the
    // policy does not depend on the function it belongs to).
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'LaunchJobs',
        actions: ['lambda:InvokeFunction'],
        resources: [
          stack.formatArn({
            service: 'lambda',
            resource: 'function',
            resourceName: functionName,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
    );

    const authorizer = new HttpUserPoolAuthorizer('Cognito', signIn.userPool, {
      userPoolClients: [signIn.desktop, signIn.daemon],
      userPoolRegion: REGION,
    });
    const integration = new HttpLambdaIntegration('Router', this.fn, {
      payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
    });

    this.routes = new Map();
    for (const route of props.routes) {
      const key = `${route.method} ${route.path}`;
      if (key in NOT_ROUTED) continue;
      const [made] = this.api.addRoutes({
        path: route.path,
        methods: [route.method as apigw.HttpMethod],
        integration,
        authorizer: UNAUTHENTICATED_ROUTES.includes(key) ? new apigw.HttpNoneAuthorizer() : authorizer,
      });
      this.routes.set(key, made);
    }
    // Anything else still reaches the Router (its 404 and 405 are problem
    // details), signed in.
    new apigw.HttpRoute(this, 'DefaultRoute', {
      httpApi: this.api,
      routeKey: apigw.HttpRouteKey.DEFAULT,
      integration,
      authorizer,
    });

    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: settings.logRetentionDays as logs.RetentionDays,
      removalPolicy: logRemoval,
    });
    const stage = new apigw.HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: 200, burstLimit: 400 },
      detailedMetricsEnabled: true,
    });
    (stage.node.defaultChild as apigw.CfnStage).accessLogSettings = {
      destinationArn: accessLogs.logGroupArn,
      format: JSON.stringify({
        requestId: '$context.requestId',
        routeKey: '$context.routeKey',
        status: '$context.status',
        latencyMs: '$context.responseLatency',
        integrationError: '$context.integrationErrorMessage',
        authorizerError: '$context.authorizer.error',
      }),
    };
  }
}
