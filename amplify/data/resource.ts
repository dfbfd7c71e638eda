/**
 * The DynamoDB tables of `cloud-lambda/aws-schema.json`, made exactly as
 * the file says: `<prefix><name>`, its partition and sort keys with their
 * types, its global secondary indexes (keys and projection), its TTL
 * attribute, on-demand billing, and point-in-time recovery where the file
 * asks for it (every table whose loss loses data; not the webhook
 * deliveries, which expire within a day anyway). Nothing here names a
 * table or an attribute: a table added to the schema is a table deployed.
 *
 * Amplify's own `defineData` is not used: it makes AppSync models, and
 * the Rust backend talks to DynamoDB directly.
 */

import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

import type { AwsSchema, KeyAttr, KeyType } from '../contract.js';
import type { Settings } from '../settings.js';

const ATTRIBUTE_TYPE: Record<KeyType, dynamodb.AttributeType> = {
  S: dynamodb.AttributeType.STRING,
  N: dynamodb.AttributeType.NUMBER,
  B: dynamodb.AttributeType.BINARY,
};

const attribute = (k: KeyAttr): dynamodb.Attribute => ({
  name: k.name,
  type: ATTRIBUTE_TYPE[k.type],
});

export class AtelierTables extends Construct {
  /** Every table, by its schema name (`users`, `log`, …). */
  readonly tables: Record<string, dynamodb.TableV2>;

  constructor(scope: Construct, id: string, schema: AwsSchema, settings: Settings) {
    super(scope, id);
    this.tables = {};
    for (const def of schema.tables) {
      this.tables[def.name] = new dynamodb.TableV2(this, constructId(def.name), {
        tableName: `${settings.prefix}${def.name}`,
        partitionKey: attribute(def.keys.partition),
        sortKey: def.keys.sort && attribute(def.keys.sort),
        billing: dynamodb.Billing.onDemand(),
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: def.pointInTimeRecovery },
        timeToLiveAttribute: def.ttlAttribute,
        encryption: dynamodb.TableEncryptionV2.awsManagedKey(),
        deletionProtection: settings.retainData,
        removalPolicy: settings.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
        globalSecondaryIndexes: (def.globalSecondaryIndexes ?? []).map((i) => ({
          indexName: i.name,
          partitionKey: attribute(i.keys.partition),
          sortKey: i.keys.sort && attribute(i.keys.sort),
          projectionType:
            i.projection === 'ALL' ? dynamodb.ProjectionType.ALL : dynamodb.ProjectionType.KEYS_ONLY,
        })),
      });
    }
  }
}

function constructId(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
