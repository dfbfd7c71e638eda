// Settings and the readers of the Rust side's files, without synthesis.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { lambdaEnvironment } from '../compute/resource.js';
import { METRICS_FILE, readLambdaContract, readMetrics, readRoutes, readSchema, SCHEMA_FILE } from '../contract.js';
import {
  checkLambdaBinary,
  derivePrefix,
  MAX_PREFIX_LEN,
  readSettings,
  REPO_ROOT,
  SettingsError,
  validatePrefix,
} from '../settings.js';
import { commonPrefix, kindFilter } from '../storage/resource.js';
import { fakeLambdaDir } from './support.js';

const branch = (name: string) => ({ namespace: 'd1abcdef', name, type: 'branch' as const });

describe('environments', () => {
  for (const [id, env, kind] of [
    [branch('main'), {}, 'prod'],
    [branch('feature-x'), {}, 'preview'],
    [branch('release'), { ATELIER_PROD_BRANCHES: 'main, release' }, 'prod'],
    [branch('main'), { ATELIER_PROD_BRANCHES: 'release' }, 'preview'],
    [{ namespace: 'atelier', name: 'alice', type: 'sandbox' as const }, {}, 'sandbox'],
  ] as const) {
    test(`${id.type} ${id.name} with ${JSON.stringify(env)} is ${kind}`, () => {
      const s = readSettings(id, env);
      assert.equal(s.kind, kind);
      assert.equal(s.retainData, kind === 'prod');
    });
  }

  test('prod reserves more concurrency and keeps logs longer than a preview', () => {
    const prod = readSettings(branch('main'), {});
    const preview = readSettings(branch('pr-7'), {});
    assert.ok(prod.reservedConcurrency! > preview.reservedConcurrency!);
    assert.ok(prod.logRetentionDays > preview.logRetentionDays);
    assert.equal(readSettings(branch('main'), { ATELIER_RESERVED_CONCURRENCY: 'off' }).reservedConcurrency, undefined);
  });

  test('bad settings are refused with the setting named', () => {
    for (const [env, named] of [
      [{ ATELIER_LAMBDA_ARCH: 'mips' }, 'ATELIER_LAMBDA_ARCH'],
      [{ ATELIER_RESERVED_CONCURRENCY: '-1' }, 'ATELIER_RESERVED_CONCURRENCY'],
      [{ ATELIER_LAMBDA_MEMORY_MB: '64' }, 'ATELIER_LAMBDA_MEMORY_MB'],
      [{ ATELIER_REDIRECT_PORTS: '47615,http' }, 'ATELIER_REDIRECT_PORTS'],
      [{ ATELIER_SELF_SIGN_UP: 'yes' }, 'ATELIER_SELF_SIGN_UP'],
      [{ ATELIER_AWS_PREFIX: 'Atelier-' }, 'prefix'],
    ] as const) {
      assert.throws(() => readSettings(branch('main'), env), (e: Error) => {
        assert.ok(e instanceof SettingsError);
        assert.match(e.message, new RegExp(named));
        return true;
      });
    }
  });
});

describe('deployment prefix', () => {
  test('one per app and branch, valid for the Rust side', () => {
    for (const [id, want] of [
      [branch('main'), 'atelier-d1abcdef-main-'],
      [branch('feature/Sign_in'), 'atelier-d1abcdef-feature-sign-in-'],
      [{ namespace: 'atelier', name: 'alice', type: 'sandbox' as const }, 'atelier-atelier-alice-'],
    ] as const) {
      assert.equal(derivePrefix(id), want);
    }
  });

  test('long branch names are cut and stay distinct', () => {
    const a = derivePrefix(branch('a-very-long-branch-name-for-a-feature-one'));
    const b = derivePrefix(branch('a-very-long-branch-name-for-a-feature-two'));
    assert.notEqual(a, b);
    for (const p of [a, b]) {
      assert.ok(p.length <= MAX_PREFIX_LEN, p);
      validatePrefix(p);
    }
  });

  test("the same rule as storage::aws::schema::validate_prefix", () => {
    // The cases of the Rust test `prefixes_must_be_valid_in_table_and_bucket_names`.
    for (const good of ['', 'atelier-dev-', 't1-', '0abc']) validatePrefix(good);
    for (const bad of ['Atelier-', '-x', 'a_b', 'a.b', 'a b', 'a'.repeat(MAX_PREFIX_LEN + 1)]) {
      assert.throws(() => validatePrefix(bad), SettingsError, bad);
    }
    const rust = readFileSync(path.join(REPO_ROOT, 'cloud-lambda/src/storage/aws/schema.rs'), 'utf8');
    assert.match(rust, new RegExp(`MAX_PREFIX_LEN: usize = ${MAX_PREFIX_LEN};`));
  });

  test('the hosted UI domain avoids the words Cognito refuses', () => {
    const s = readSettings({ namespace: 'amazonaws', name: 'cognito', type: 'branch' }, {});
    assert.doesNotMatch(s.authDomainPrefix, /aws|amazon|cognito/);
  });
});

describe('the Lambda binary', () => {
  test('is found and its architecture checked', () => {
    assert.match(checkLambdaBinary(fakeLambdaDir('x86_64'), 'x86_64'), /bootstrap$/);
    assert.match(checkLambdaBinary(fakeLambdaDir('arm64'), 'arm64'), /bootstrap$/);
    const cases = [
      [fakeLambdaDir('arm64'), 'x86_64', /built for arm64 but ATELIER_LAMBDA_ARCH is x86_64/],
      [fakeLambdaDir('x86_64'), 'arm64', /built for x86_64/],
      [fakeLambdaDir('not-elf'), 'x86_64', /not an ELF executable/],
      ['/nonexistent', 'x86_64', /no Lambda binary at .*cargo lambda build --release --x86-64/],
    ] as const;
    for (const [dir, arch, message] of cases) {
      assert.throws(() => checkLambdaBinary(dir, arch), message);
    }
  });
});

describe('the Rust side, read', () => {
  test('the schema file is the one cloud-lambda compiles in', () => {
    // storage/aws/schema.rs: include_str!("../../../aws-schema.json")
    const rustFile = path.join(REPO_ROOT, 'cloud-lambda/src/storage/aws/schema.rs');
    const include = /include_str!\("([^"]+aws-schema\.json)"\)/.exec(readFileSync(rustFile, 'utf8'));
    assert.ok(include, 'schema.rs compiles in aws-schema.json');
    assert.equal(path.resolve(path.dirname(rustFile), include[1]), SCHEMA_FILE);
    const schema = readSchema();
    assert.ok(schema.tables.some((t) => t.name === 'log'));
    assert.ok(schema.buckets.some((b) => b.name === 'blobs'));
  });

  test('routes and metrics are read from the OpenAPI document and metrics.rs', () => {
    const routes = readRoutes().map((r) => `${r.method} ${r.path}`);
    for (const r of ['POST /v1/sync', 'POST /replicate/webhook', 'GET /assets/{id}', 'GET /costs.csv']) {
      assert.ok(routes.includes(r), r);
    }
    const m = readMetrics();
    assert.equal(m.namespace, 'Atelier');
    assert.equal(m.dimension, 'Deployment');
    assert.ok(['JobFailures', 'JobsFinished', 'SpendNanoUsd'].every((n) => m.names.includes(n)), m.names.join());
    assert.throws(() => readMetrics(path.join(REPO_ROOT, 'README.md')), /cannot find NAMESPACE/);
    assert.ok(METRICS_FILE.endsWith('metrics.rs'));
  });

  test("the Lambda's variables and secrets come from its own source", () => {
    const l = readLambdaContract();
    assert.equal(l.secretParametersVariable, 'ATELIER_SECRET_PARAMETERS');
    assert.deepEqual(l.secretNames, ['GEMINI_API_KEY', 'REPLICATE_API_TOKEN', 'REPLICATE_WEBHOOK_SECRET']);
    assert.ok(l.variables.includes('ATELIER_AWS_PREFIX') && l.variables.includes('ATELIER_METRICS_DEPLOYMENT'));
    assert.throws(() => readLambdaContract(path.join(REPO_ROOT, 'README.md')), /cannot find VARIABLES/);
  });
});

describe('lifecycle rules pick a kind of image', () => {
  const layout = (keys: Record<string, string>, kindTag?: string) => ({ name: 'blobs', purpose: '', keys, kindTag });

  test("by the schema's kind tag when the user id comes first (no prefix selects a kind)", () => {
    const keys = {
      raw: 'users/{userId}/raw/{sha256}',
      derivatives: 'users/{userId}/derivatives/{sha256}',
      thumbnails: 'users/{userId}/thumbnails/{sha256}',
    };
    const def = layout(keys, 'kind');
    assert.deepEqual(kindFilter(def, 'derivatives'), { tags: { kind: 'derivatives' } });
    assert.equal(commonPrefix(Object.values(def.keys)), 'users/');
    // Without a tag the backend sets, no rule could select the kind: refused.
    assert.throws(() => kindFilter(layout(keys), 'derivatives'), /names no kindTag/);
  });

  test('by prefix when the kind comes first', () => {
    const def = layout({
      raw: 'raw/{userId}/{sha256}',
      derivatives: 'derivatives/{userId}/{sha256}',
      thumbnails: 'thumbnails/{userId}/{sha256}',
    });
    assert.deepEqual(kindFilter(def, 'thumbnails'), { prefix: 'thumbnails/' });
    assert.equal(commonPrefix(Object.values(def.keys)), '');
  });
});

describe('documented in one place (amplify/README.md)', () => {
  const readme = readFileSync(path.join(REPO_ROOT, 'amplify/README.md'), 'utf8');

  test('every variable the function is told, and every setting read at synthesis', () => {
    const told = Object.keys(
      lambdaEnvironment({
        settings: readSettings(branch('main'), {}),
        issuer: 'i',
        audience: ['a'],
        publicUrl: 'u',
        secrets: {} as never,
        lambda: readLambdaContract(),
      }),
    );
    const read = [...readFileSync(path.join(REPO_ROOT, 'amplify/settings.ts'), 'utf8').matchAll(/env\.(ATELIER_[A-Z_]+)|'(ATELIER_[A-Z_]+)'/g)]
      .map((m) => m[1] ?? m[2]);
    assert.ok(read.includes('ATELIER_ALARM_EMAIL') && told.includes('ATELIER_COGNITO_ISSUER'));
    for (const name of [...told, ...read]) assert.ok(readme.includes(`\`${name}\``), `${name} is not in amplify/README.md`);
  });

  test('amplify.yml builds and deploys for one architecture', () => {
    const yml = readFileSync(path.join(REPO_ROOT, 'amplify/amplify.yml'), 'utf8');
    const arches = new Set([...yml.matchAll(/ATELIER_LAMBDA_ARCH=(\w+)/g)].map((m) => m[1]));
    assert.deepEqual([...arches], ['arm64']);
    assert.match(yml, /build-lambda\.sh/);
    assert.match(yml, /ampx -- pipeline-deploy --branch "\$AWS_BRANCH" --app-id "\$AWS_APP_ID"/);
  });
});
