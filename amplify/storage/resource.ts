/**
 * Object storage: the buckets of `cloud-lambda/aws-schema.json`, each
 * named `<prefix><name>` as the Rust backend expects, encrypted with one
 * customer managed KMS key (rotated yearly; S3 bucket keys keep the KMS
 * calls few), public access blocked, TLS 1.2+ enforced by bucket policy,
 * versioned so a DynamoDB point-in-time restore still finds the snapshot
 * and chunk objects compaction deleted since (noncurrent versions live as
 * long as the restore window, 35 days), and incomplete multipart uploads
 * aborted after a day.
 *
 * Images live in one bucket (`blobs`) under three prefixes per user —
 * `raw`, `derivatives`, `thumbnails` — because that is the backend's
 * layout: presigned URLs are scoped to one user's prefix in one bucket,
 * one CORS rule serves them all, and a blob is content-addressed once.
 * Each kind still gets its own lifecycle rule, selected by its key prefix
 * where the layout makes the kind the first segment, and otherwise (the
 * layout is `users/{userId}/<kind>/…`, and S3 rules match prefixes from
 * the key's start only) by the object tag the backend sets on every
 * object to its kind: the bucket's `kindTag` in the schema
 * (`atelier-kind=derivatives`), which the Rust side reads too.
 */

import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

import type { AwsSchema, BucketDef } from '../contract.js';
import type { Settings } from '../settings.js';

/** The object tag a sweep sets on a thumbnail no version refers to any more. */
export const ORPHANED_TAG = 'atelier-orphaned';

/** Days before an object of each rule moves or goes. */
export const LIFECYCLE_DAYS = {
  abortIncompleteUpload: 1,
  derivativesToInfrequentAccess: 30,
  orphanedThumbnails: 7,
  /** DynamoDB's point-in-time recovery window. */
  noncurrentVersions: 35,
} as const;

/** Headers a presigned PUT or GET may carry from a browser. */
export const CORS_HEADERS = [
  'content-type',
  'content-md5',
  'if-none-match',
  'x-amz-checksum-sha256',
  'x-amz-sdk-checksum-algorithm',
  'x-amz-tagging',
];

export class AtelierStorage extends Construct {
  readonly key: kms.Key;
  /** Every bucket of the schema, by its schema name (`blobs`, `docs`). */
  readonly buckets: Record<string, s3.Bucket>;
  /** The key prefix each bucket's objects share (`users/`, `docs/`), for scoped grants. */
  readonly objectPrefixes: Record<string, string>;

  constructor(scope: Construct, id: string, schema: AwsSchema, settings: Settings) {
    super(scope, id);
    const removal = settings.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    this.key = new kms.Key(this, 'Key', {
      alias: `alias/${settings.prefix}storage`,
      description: `Atelier ${settings.prefix}: images, documents`,
      enableKeyRotation: true,
      removalPolicy: removal,
      pendingWindow: Duration.days(settings.retainData ? 30 : 7),
    });
    this.buckets = {};
    this.objectPrefixes = {};
    for (const def of schema.buckets) {
      this.objectPrefixes[def.name] = commonPrefix(Object.values(def.keys));
      this.buckets[def.name] = new s3.Bucket(this, bucketId(def.name), {
        bucketName: `${settings.prefix}${def.name}`,
        encryption: s3.BucketEncryption.KMS,
        encryptionKey: this.key,
        bucketKeyEnabled: true,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        enforceSSL: true,
        minimumTLSVersion: 1.2,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned: true,
        lifecycleRules: lifecycleRules(def),
        cors: def.name === 'blobs' ? corsRules(settings) : undefined,
        removalPolicy: removal,
        autoDeleteObjects: !settings.retainData,
      });
    }
  }
}

function bucketId(name: string): string {
  return `${name[0].toUpperCase()}${name.slice(1)}Bucket`.replace(/[^A-Za-z0-9]/g, '');
}

/** The literal start of a key layout, up to its first `{placeholder}`. */
export function literalPrefix(layout: string): string {
  const i = layout.indexOf('{');
  return i < 0 ? layout : layout.slice(0, i);
}

/** The longest literal start every layout shares (`users/`). */
export function commonPrefix(layouts: string[]): string {
  const literals = layouts.map(literalPrefix);
  let out = literals[0] ?? '';
  for (const l of literals) {
    while (!l.startsWith(out)) out = out.slice(0, -1);
  }
  return out;
}

/**
 * How a lifecycle rule picks the objects of one kind: by its literal key
 * prefix when no other kind's layout starts the same way, else by the
 * bucket's kind tag (`kindTag` in the schema).
 */
export function kindFilter(def: BucketDef, kind: string): { prefix?: string; tags?: Record<string, string> } {
  const own = literalPrefix(def.keys[kind]);
  const shared = Object.entries(def.keys).some(
    ([other, layout]) => other !== kind && (literalPrefix(layout).startsWith(own) || own.startsWith(literalPrefix(layout))),
  );
  if (!shared && own !== '') return { prefix: own };
  if (!def.kindTag) {
    throw new Error(
      `bucket ${def.name}: no key prefix sets its ${kind} objects apart, and the schema names no kindTag to select them by`,
    );
  }
  return { tags: { [def.kindTag]: kind } };
}

function lifecycleRules(def: BucketDef): s3.LifecycleRule[] {
  const rules: s3.LifecycleRule[] = [
    {
      id: 'abort-incomplete-uploads',
      abortIncompleteMultipartUploadAfter: Duration.days(LIFECYCLE_DAYS.abortIncompleteUpload),
    },
    {
      id: 'noncurrent-versions-after-restore-window',
      noncurrentVersionExpiration: Duration.days(LIFECYCLE_DAYS.noncurrentVersions),
    },
    { id: 'expired-delete-markers', expiredObjectDeleteMarker: true },
  ];
  if ('derivatives' in def.keys) {
    const f = kindFilter(def, 'derivatives');
    rules.push({
      id: 'derivatives-to-infrequent-access',
      prefix: f.prefix,
      tagFilters: f.tags,
      transitions: [
        {
          storageClass: s3.StorageClass.INFREQUENT_ACCESS,
          transitionAfter: Duration.days(LIFECYCLE_DAYS.derivativesToInfrequentAccess),
        },
      ],
    });
  }
  if ('thumbnails' in def.keys) {
    const f = kindFilter(def, 'thumbnails');
    rules.push({
      id: 'expire-orphaned-thumbnails',
      prefix: f.prefix,
      tagFilters: { ...f.tags, [ORPHANED_TAG]: 'true' },
      expiration: Duration.days(LIFECYCLE_DAYS.orphanedThumbnails),
    });
  }
  return rules;
}

function corsRules(settings: Settings): s3.CorsRule[] {
  return [
    {
      id: 'presigned-put-get',
      allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
      allowedOrigins: settings.corsOrigins,
      allowedHeaders: CORS_HEADERS,
      exposedHeaders: ['etag', 'x-amz-checksum-sha256', 'x-amz-version-id'],
      maxAge: 3600,
    },
  ];
}
