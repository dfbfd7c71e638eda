/**
 * What the Rust side says the infrastructure must provide, read from its
 * own files at synthesis (never copied): the tables, indexes, TTL
 * attributes and buckets of `cloud-lambda/aws-schema.json`, the routes of
 * `cloud-lambda/openapi.json`, and the CloudWatch metrics the Router
 * emits (`cloud-lambda/src/metrics.rs`). A change on the Rust side
 * changes the synthesized template, and the tests fail where the two
 * would disagree.
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

/** The CloudWatch namespace and EMF metric names `cloud-lambda/src/metrics.rs` writes. */
export function readMetrics(file = METRICS_FILE): { namespace: string; names: string[] } {
  const source = readFileSync(file, 'utf8');
  const namespace = /pub const NAMESPACE: &str = "([^"]+)";/.exec(source)?.[1];
  const table = /const COUNTERS: \[\(&str, &str, &str\); \d+\] = \[([\s\S]*?)\n\];/.exec(source)?.[1];
  if (!namespace || !table) {
    throw new Error(`${file}: cannot find NAMESPACE and COUNTERS (the metrics the alarms read)`);
  }
  const names = [...table.matchAll(/\(\s*"[^"]*",\s*"[^"]*",\s*"([^"]+)",?\s*\)/g)].map((m) => m[1]);
  return { namespace, names };
}
