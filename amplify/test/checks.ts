/**
 * Comparisons of a synthesized template with what the Rust side declares,
 * as lists of differences (empty when they agree), so a test can show
 * both that they agree and that a disagreement is caught.
 */

import type { Template } from 'aws-cdk-lib/assertions';

import type { AwsSchema, KeySchema, Route } from '../contract.js';

type Resource = { Type: string; Properties: Record<string, any> };

function resources(template: Template, type: string): Resource[] {
  return Object.values(template.findResources(type)) as Resource[];
}

function keySchema(keys: KeySchema) {
  return [
    { AttributeName: keys.partition.name, KeyType: 'HASH' },
    ...(keys.sort ? [{ AttributeName: keys.sort.name, KeyType: 'RANGE' }] : []),
  ];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Every way the template's tables differ from the schema's. */
export function tableDifferences(template: Template, schema: AwsSchema, prefix: string): string[] {
  const out: string[] = [];
  const made = new Map(
    resources(template, 'AWS::DynamoDB::GlobalTable').map((r) => [r.Properties.TableName, r.Properties]),
  );
  for (const def of schema.tables) {
    const name = `${prefix}${def.name}`;
    const t = made.get(name);
    made.delete(name);
    if (!t) {
      out.push(`table ${name} is missing`);
      continue;
    }
    if (!same(t.KeySchema, keySchema(def.keys))) {
      out.push(`${name}: key schema ${JSON.stringify(t.KeySchema)}, the schema says ${JSON.stringify(keySchema(def.keys))}`);
    }
    const declared = new Map<string, string>(
      t.AttributeDefinitions.map((a: { AttributeName: string; AttributeType: string }) => [a.AttributeName, a.AttributeType]),
    );
    const wanted = new Map<string, string>();
    for (const k of [def.keys, ...(def.globalSecondaryIndexes ?? []).map((i) => i.keys)]) {
      for (const a of [k.partition, k.sort]) if (a) wanted.set(a.name, a.type);
    }
    if (!same([...declared].sort(), [...wanted].sort())) {
      out.push(`${name}: attribute types ${JSON.stringify([...declared])}, the schema says ${JSON.stringify([...wanted])}`);
    }
    const indexes = new Map<string, any>(
      (t.GlobalSecondaryIndexes ?? []).map((i: { IndexName: string }) => [i.IndexName, i]),
    );
    for (const i of def.globalSecondaryIndexes ?? []) {
      const got = indexes.get(i.name);
      indexes.delete(i.name);
      if (!got) out.push(`${name}: index ${i.name} is missing`);
      else {
        if (!same(got.KeySchema, keySchema(i.keys))) out.push(`${name}.${i.name}: key schema differs`);
        if (got.Projection?.ProjectionType !== i.projection) out.push(`${name}.${i.name}: projection differs`);
      }
    }
    for (const extra of indexes.keys()) out.push(`${name}: index ${extra} is not in the schema`);
    if (t.BillingMode !== schema.billingMode) out.push(`${name}: billing ${t.BillingMode}`);
    const ttl = t.TimeToLiveSpecification;
    const ttlAttr = ttl?.Enabled ? ttl.AttributeName : undefined;
    if (ttlAttr !== def.ttlAttribute) out.push(`${name}: TTL on ${ttlAttr}, the schema says ${def.ttlAttribute}`);
    const pitr = t.Replicas?.[0]?.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled ?? false;
    if (pitr !== def.pointInTimeRecovery) out.push(`${name}: point-in-time recovery ${pitr}`);
  }
  for (const extra of made.keys()) out.push(`table ${extra} is not in the schema`);
  return out;
}

/** Route keys (`GET /assets/{id}`) of the HTTP API, with their authorization type. */
export function apiRoutes(template: Template): Map<string, string> {
  return new Map(
    resources(template, 'AWS::ApiGatewayV2::Route').map((r) => [
      r.Properties.RouteKey,
      r.Properties.AuthorizationType ?? 'NONE',
    ]),
  );
}

/** Operations of the Router that the HTTP API does not route and are not excused. */
export function routeDifferences(
  template: Template,
  routes: Route[],
  notRouted: Record<string, string>,
): string[] {
  const made = apiRoutes(template);
  const keys = new Set(routes.map((r) => `${r.method} ${r.path}`));
  const out: string[] = [];
  for (const key of keys) {
    if (!made.has(key) && !(key in notRouted)) out.push(`${key} is not routed by the HTTP API`);
  }
  for (const key of Object.keys(notRouted)) {
    if (!keys.has(key)) out.push(`${key} is excused from routing but is not in the OpenAPI document`);
    if (made.has(key)) out.push(`${key} is excused from routing but routed`);
  }
  for (const key of made.keys()) {
    if (key !== '$default' && !keys.has(key)) out.push(`${key} is routed but not in the OpenAPI document`);
  }
  return out;
}
