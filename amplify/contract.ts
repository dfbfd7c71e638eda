/**
 * What the Rust side says the infrastructure must provide, read from its
 * own files at synthesis (never copied): the tables, indexes, TTL
 * attributes, buckets and object tags of `cloud-lambda/aws-schema.json`,
 * the routes of `cloud-lambda/openapi.json`, the CloudWatch metrics the
 * Router emits (`cloud-lambda/src/metrics.rs`), and the environment
 * variables and provider secrets the Lambda reads
 * (`cloud-lambda/src/lambda/config.rs`, `secrets.rs`). A change on the
 * Rust side changes the synthesized template, and the tests fail where
 * the two would disagree.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { REPO_ROOT } from './settings.js';

export type KeyType = 'S' | 'N' | 'B';

export interface KeyAttr {
  name: string;
  type: KeyType;
}

export interface KeySchema {
  partition: KeyAttr;
  sort?: KeyAttr;
}

export interface IndexDef {
  name: string;
  keys: KeySchema;
  projection: 'KEYS_ONLY' | 'ALL';
}

export interface TableDef {
  name: string;
  purpose: string;
  keys: KeySchema;
  globalSecondaryIndexes?: IndexDef[];
  ttlAttribute?: string;
  pointInTimeRecovery: boolean;
}

export interface BucketDef {
  name: string;
  purpose: string;
  /** Object key layouts by kind, e.g. `raw: users/{userId}/raw/{sha256}`. */
  keys: Record<string, string>;
  /** The object tag the backend sets to each object's kind (a key of `keys`). */
  kindTag?: string;
}

export interface AwsSchema {
  version: number;
  billingMode: string;
  tables: TableDef[];
  buckets: BucketDef[];
}

export const SCHEMA_FILE = path.join(REPO_ROOT, 'cloud-lambda', 'aws-schema.json');
export const OPENAPI_FILE = path.join(REPO_ROOT, 'cloud-lambda', 'openapi.json');
export const METRICS_FILE = path.join(REPO_ROOT, 'cloud-lambda', 'src', 'metrics.rs');
export const LAMBDA_CONFIG_FILE = path.join(REPO_ROOT, 'cloud-lambda', 'src', 'lambda', 'config.rs');
export const LAMBDA_SECRETS_FILE = path.join(REPO_ROOT, 'cloud-lambda', 'src', 'lambda', 'secrets.rs');

/** The AWS backend's schema, checked for the shape this code relies on. */
export function readSchema(file = SCHEMA_FILE): AwsSchema {
  const schema = JSON.parse(readFileSync(file, 'utf8')) as AwsSchema;
  const fail = (what: string) => {
    throw new Error(`${file}: ${what}`);
  };
  if (schema.version !== 1) fail(`version ${schema.version}; this infrastructure reads version 1`);
  if (schema.billingMode !== 'PAY_PER_REQUEST') fail(`billingMode ${schema.billingMode}`);
  const checkKeys = (where: string, keys: KeySchema) => {
    for (const k of [keys?.partition, keys?.sort]) {
      if (k === undefined && keys?.partition !== undefined) continue;
      if (!k || typeof k.name !== 'string' || !['S', 'N', 'B'].includes(k.type)) {
        fail(`${where}: a key needs a name and a type S, N or B`);
      }
    }
  };
  for (const t of schema.tables ?? []) {
    checkKeys(`table ${t.name}`, t.keys);
    for (const i of t.globalSecondaryIndexes ?? []) {
      checkKeys(`index ${t.name}.${i.name}`, i.keys);
      if (!['KEYS_ONLY', 'ALL'].includes(i.projection)) fail(`index ${i.name}: projection ${i.projection}`);
    }
  }
  if (!schema.tables?.length || !schema.buckets?.length) fail('no tables or no buckets');
  return schema;
}

export function bucketDef(schema: AwsSchema, name: string): BucketDef {
  const b = schema.buckets.find((b) => b.name === name);
  if (!b) throw new Error(`${SCHEMA_FILE} has no bucket ${JSON.stringify(name)}`);
  return b;
}

/** One HTTP route of the Router: `GET /assets/{id}`. */
export interface Route {
  method: string;
  path: string;
  /** The operation says a bearer token is needed. */
  bearer: boolean;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** Every operation of the committed OpenAPI document (kept current by the Router's tests). */
export function readRoutes(file = OPENAPI_FILE): Route[] {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as {
    paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
  };
  const routes: Route[] = [];
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      routes.push({
        method: method.toUpperCase(),
        path: p,
        bearer: (op.security ?? []).some((s) => 'bearer' in s),
      });
    }
  }
  return routes.sort((a, b) => `${a.path} ${a.method}`.localeCompare(`${b.path} ${b.method}`));
}

/** The Router's EMF metrics: namespace, the one dimension, metric names. */
export interface RouterMetrics {
  namespace: string;
  dimension: string;
  names: string[];
}

/** The CloudWatch namespace, dimension and EMF metric names `cloud-lambda/src/metrics.rs` writes. */
export function readMetrics(file = METRICS_FILE): RouterMetrics {
  const source = readFileSync(file, 'utf8');
  const namespace = /pub const NAMESPACE: &str = "([^"]+)";/.exec(source)?.[1];
  const dimension = /pub const DIMENSION: &str = "([^"]+)";/.exec(source)?.[1];
  const table = /const COUNTERS: \[\(&str, &str, &str\); \d+\] = \[([\s\S]*?)\n\];/.exec(source)?.[1];
  if (!namespace || !dimension || !table) {
    throw new Error(`${file}: cannot find NAMESPACE, DIMENSION and COUNTERS (the metrics the alarms read)`);
  }
  const names = [...table.matchAll(/\(\s*"[^"]*",\s*"[^"]*",\s*"([^"]+)",?\s*\)/g)].map((m) => m[1]);
  return { namespace, dimension, names };
}

/** What the Lambda reads: every environment variable, and the provider secrets it takes from SSM. */
export interface LambdaContract {
  variables: string[];
  /** The variable naming the secrets' SSM parameters. */
  secretParametersVariable: string;
  secretNames: string[];
}

/** The string literals of `const NAME: [&str; N] = [...]` in `source`. */
function stringArray(source: string, name: string, file: string): string[] {
  const body = new RegExp(`const ${name}: \\[&str; \\d+\\] = \\[([\\s\\S]*?)\\];`).exec(source)?.[1];
  if (!body) throw new Error(`${file}: cannot find ${name}`);
  return [...body.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
}

/** The variables and secrets of `cloud-lambda/src/lambda/config.rs` and `secrets.rs`. */
export function readLambdaContract(configFile = LAMBDA_CONFIG_FILE, secretsFile = LAMBDA_SECRETS_FILE): LambdaContract {
  const config = readFileSync(configFile, 'utf8');
  const secrets = readFileSync(secretsFile, 'utf8');
  const secretParametersVariable = /pub const SECRET_PARAMETERS_ENV: &str = "([^"]+)";/.exec(secrets)?.[1];
  if (!secretParametersVariable) throw new Error(`${secretsFile}: cannot find SECRET_PARAMETERS_ENV`);
  return {
    variables: stringArray(config, 'VARIABLES', configFile),
    secretParametersVariable,
    secretNames: stringArray(secrets, 'SECRET_NAMES', secretsFile),
  };
}
