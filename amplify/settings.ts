/**
 * Every knob of a deployment in one place: which environment a deployment
 * is (prod, preview or a personal sandbox) and what follows from it, the
 * deployment prefix the Rust backend puts in front of every table and
 * bucket name, where the Lambda binary is, and the operator's settings
 * (environment variables read at synthesis, all optional).
 *
 * Nothing here reads AWS: a deployment is decided by the Amplify context
 * (`amplify-backend-namespace`, `amplify-backend-name`,
 * `amplify-backend-type`) and the environment of the build.
 */

import { createHash } from 'node:crypto';
import { existsSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The one region Atelier deploys to (DESIGN.md section 9). */
export const REGION = 'eu-central-1';

/** The repository root (amplify/ is one level below it). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The Rust side's longest accepted prefix (`storage::aws::schema::MAX_PREFIX_LEN`). */
export const MAX_PREFIX_LEN = 40;

/** Where the desktop app listens for the browser's redirect (`atelier --redirect-port`). */
export const DEFAULT_REDIRECT_PORT = 47615;

export type EnvironmentKind = 'prod' | 'preview' | 'sandbox';
export type LambdaArch = 'x86_64' | 'arm64';

/** What the Amplify deployment engine passes in the CDK context. */
export interface BackendId {
  namespace: string;
  name: string;
  type: 'branch' | 'sandbox' | 'standalone';
}

/** A deployment's settings, decided at synthesis. */
export interface Settings {
  kind: EnvironmentKind;
  backendId: BackendId;
  /** In front of every table and bucket name (`ATELIER_AWS_PREFIX` of the Lambda). */
  prefix: string;
  /** The Cognito hosted UI's domain prefix (`<it>.auth.eu-central-1.amazoncognito.com`). */
  authDomainPrefix: string;
  /** The directory holding `bootstrap`, as `cargo lambda build` leaves it. */
  lambdaDir: string;
  lambdaArch: LambdaArch;
  lambdaMemoryMb: number;
  /** Reserved concurrency of the function; `undefined` reserves none. */
  reservedConcurrency: number | undefined;
  logRetentionDays: number;
  /** Loopback ports registered as the desktop's redirect URLs. */
  redirectPorts: number[];
  /** Origins allowed by the buckets' CORS rules (presigned PUT/GET from a browser). */
  corsOrigins: string[];
  selfSignUp: boolean;
  /** Retain data (tables, buckets, key, user pool) when the stack goes. */
  retainData: boolean;
  alarmEmail: string | undefined;
  /** Daily provider spend that raises the alarm, in US dollars. */
  dailySpendAlarmUsd: number;
  /** Failed provider jobs within an hour before the failure rate can raise the alarm. */
  jobFailuresPerHourAlarm: number;
  /** Per cent of an hour's finished provider jobs that failed, raising the alarm. */
  jobFailureRateAlarmPercent: number;
  /** Passed through to the Lambda as its `ATELIER_*` limits. */
  jobsPerHour: string;
  dailySpendCapUsd: string;
}

/** A setting that cannot be used; the message says which and why. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads the deployment's settings from the Amplify context and `env`. */
export function readSettings(backendId: BackendId, env: Env = process.env): Settings {
  const prodBranches = list(env.ATELIER_PROD_BRANCHES ?? 'main');
  const kind: EnvironmentKind =
    backendId.type === 'sandbox'
      ? 'sandbox'
      : prodBranches.includes(backendId.name)
        ? 'prod'
        : 'preview';
  const prod = kind === 'prod';
  const prefix = env.ATELIER_AWS_PREFIX ?? derivePrefix(backendId);
  validatePrefix(prefix);
  const arch = env.ATELIER_LAMBDA_ARCH ?? 'x86_64';
  if (arch !== 'x86_64' && arch !== 'arm64') {
    throw new SettingsError(`ATELIER_LAMBDA_ARCH=${arch}: use x86_64 or arm64`);
  }
  return {
    kind,
    backendId,
    prefix,
    authDomainPrefix: authDomainPrefix(prefix),
    lambdaDir: path.resolve(
      REPO_ROOT,
      env.ATELIER_LAMBDA_DIR ?? path.join('target', 'lambda', 'atelier-lambda'),
    ),
    lambdaArch: arch,
    lambdaMemoryMb: int(env, 'ATELIER_LAMBDA_MEMORY_MB', 1024, 128, 10240),
    reservedConcurrency: optionalInt(env, 'ATELIER_RESERVED_CONCURRENCY', prod ? 50 : 5, 1, 1000),
    logRetentionDays: prod ? 90 : 14,
    redirectPorts: list(env.ATELIER_REDIRECT_PORTS ?? String(DEFAULT_REDIRECT_PORT)).map((p) =>
      port(p),
    ),
    corsOrigins: list(env.ATELIER_CORS_ORIGINS ?? 'http://localhost:*,http://127.0.0.1:*'),
    selfSignUp: bool(env, 'ATELIER_SELF_SIGN_UP', false),
    retainData: prod,
    alarmEmail: env.ATELIER_ALARM_EMAIL || undefined,
    dailySpendAlarmUsd: int(env, 'ATELIER_DAILY_SPEND_ALARM_USD', prod ? 50 : 5, 1, 1_000_000),
    jobFailuresPerHourAlarm: int(env, 'ATELIER_JOB_FAILURES_ALARM', 5, 1, 1_000_000),
    jobFailureRateAlarmPercent: int(env, 'ATELIER_JOB_FAILURE_RATE_ALARM', 20, 1, 100),
    jobsPerHour: env.ATELIER_JOBS_PER_HOUR ?? '120',
    dailySpendCapUsd: env.ATELIER_DAILY_SPEND_CAP_USD ?? (prod ? '25' : '5'),
  };
}

/**
 * `atelier-<namespace>-<name>-`, lowercased, anything but letters and
 * digits made `-`. A branch deployment's namespace is the Amplify app id,
 * so bucket names (global across AWS) stay unique; a prefix over the Rust
 * side's limit is cut and ends in a hash of the whole.
 */
export function derivePrefix(id: BackendId): string {
  const raw = `atelier-${id.namespace}-${id.name}`
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/-+$/, '');
  const whole = `${raw}-`;
  if (whole.length <= MAX_PREFIX_LEN) return whole;
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 8);
  return `${raw.slice(0, MAX_PREFIX_LEN - hash.length - 2).replace(/-+$/, '')}-${hash}-`;
}

/** The Rust side's rule (`storage::aws::schema::validate_prefix`). */
export function validatePrefix(prefix: string): void {
  if (prefix.length > MAX_PREFIX_LEN || !/^([a-z0-9][a-z0-9-]*)?$/.test(prefix)) {
    throw new SettingsError(
      `prefix ${JSON.stringify(prefix)}: use at most ${MAX_PREFIX_LEN} lowercase letters, ` +
        `digits and '-', not starting with '-' (it begins table and bucket names)`,
    );
  }
}

/** Cognito domain prefixes may not contain "aws", "amazon" or "cognito". */
function authDomainPrefix(prefix: string): string {
  const base = prefix.replace(/-+$/, '').replace(/aws|amazon|cognito/g, 'x');
  return base || 'atelier';
}

/** The ELF machine numbers `cargo lambda build` produces for each architecture. */
const ELF_MACHINE: Record<LambdaArch, number> = { x86_64: 0x3e, arm64: 0xb7 };

/**
 * Checks that `dir/bootstrap` is a Linux executable for `arch`, so a
 * deployment never ships a missing binary or one built for the other
 * architecture.
 */
export function checkLambdaBinary(dir: string, arch: LambdaArch): string {
  const file = path.join(dir, 'bootstrap');
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new SettingsError(
      `no Lambda binary at ${file}: build it first with ` +
        `\`cargo lambda build --release --${arch === 'arm64' ? 'arm64' : 'x86-64'} --bin atelier-lambda\` ` +
        `(or point ATELIER_LAMBDA_DIR at the directory holding bootstrap)`,
    );
  }
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) {
    throw new SettingsError(`${file} is not an ELF executable (the Lambda runs on provided.al2023)`);
  }
  const machine = header.readUInt16LE(18);
  if (machine !== ELF_MACHINE[arch]) {
    const built = Object.entries(ELF_MACHINE).find(([, m]) => m === machine)?.[0] ?? `machine ${machine}`;
    throw new SettingsError(
      `${file} is built for ${built} but ATELIER_LAMBDA_ARCH is ${arch}: build for ${arch} or set ATELIER_LAMBDA_ARCH=${built}`,
    );
  }
  return file;
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new SettingsError(`ATELIER_REDIRECT_PORTS: ${JSON.stringify(value)} is not a port`);
  }
  return n;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new SettingsError(`${name}=${value}: use a whole number from ${min} to ${max}`);
  }
  return n;
}

function optionalInt(env: Env, name: string, fallback: number, min: number, max: number) {
  return env[name] === 'off' ? undefined : int(env, name, fallback, min, max);
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new SettingsError(`${name}=${value}: use true or false`);
}
