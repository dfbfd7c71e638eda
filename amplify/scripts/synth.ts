/**
 * Writes the CloudFormation templates of one deployment to `--out`
 * (default `cdk.out`) without AWS: `npm run synth -- --branch main`.
 * The Lambda binary must exist (ATELIER_LAMBDA_DIR, default
 * target/lambda/atelier-lambda).
 */

import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    branch: { type: 'string', default: 'main' },
    'app-id': { type: 'string', default: 'local' },
    sandbox: { type: 'boolean', default: false },
    out: { type: 'string', default: 'cdk.out' },
  },
});
process.env.CDK_CONTEXT_JSON = JSON.stringify({
  'amplify-backend-namespace': values['app-id'],
  'amplify-backend-name': values.branch,
  'amplify-backend-type': values.sandbox ? 'sandbox' : 'branch',
});
process.env.CDK_OUTDIR = values.out;
process.env.CDK_DEFAULT_REGION ??= 'eu-central-1';

const { backend } = await import('../backend.js');
const assembly = (backend.stack.node.root as import('aws-cdk-lib').App).synth();
for (const stack of assembly.stacks) console.log(`${stack.templateFullPath}`);
