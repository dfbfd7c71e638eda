/**
 * Sign-in: one Cognito user pool (email as the user name) with the hosted
 * UI, and the two app clients the Rust side signs in with:
 *
 * - `desktop`: the desktop app (`atelier --auth-url … --client-id …`),
 *   OAuth 2.0 authorization code grant in the system browser with PKCE and
 *   a loopback redirect (RFC 8252), no client secret (a native app cannot
 *   keep one);
 * - `daemon`: `atelier-sync` on a server, which has no browser:
 *   `USER_PASSWORD_AUTH` once, then `REFRESH_TOKEN_AUTH`.
 *
 * Both issue the access tokens the HTTP API's JWT authorizer and the
 * Router's own verifier accept (the verifier also checks `token_use` and
 * `client_id`, which API Gateway does not).
 */

import { defineAuth } from '@aws-amplify/backend';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';

import { REGION, type Settings } from '../settings.js';

export const auth = defineAuth({
  loginWith: { email: true },
  accountRecovery: 'EMAIL_ONLY',
});

/** Scopes the desktop asks for (`desktop-slint/src/signin/oauth.rs`). */
export const DESKTOP_SCOPES = [
  cognito.OAuthScope.OPENID,
  cognito.OAuthScope.EMAIL,
  cognito.OAuthScope.PROFILE,
];

export interface SignIn {
  userPool: cognito.IUserPool;
  desktop: cognito.UserPoolClient;
  daemon: cognito.UserPoolClient;
  domain: cognito.UserPoolDomain;
  /** The hosted UI's base URL: `atelier --auth-url`. */
  authUrl: string;
  /** The `iss` of the pool's tokens. */
  issuer: string;
}

/** The pieces of `defineAuth`'s output this module tunes. */
export interface AmplifyAuthResources {
  userPool: cognito.IUserPool;
  cfnResources: {
    cfnUserPool: cognito.CfnUserPool;
    cfnUserPoolClient: cognito.CfnUserPoolClient;
    cfnIdentityPool: { allowUnauthenticatedIdentities?: unknown };
  };
}

/**
 * Adds the hosted UI domain and the desktop and daemon clients to the
 * pool `defineAuth` made, and tightens the pool: users are created by the
 * operator unless self sign-up is turned on, no guest identities, and in
 * prod the pool survives a deleted stack.
 */
export function configureSignIn(resources: AmplifyAuthResources, settings: Settings): SignIn {
  const { userPool, cfnResources } = resources;
  const pool = cfnResources.cfnUserPool;
  pool.adminCreateUserConfig = { allowAdminCreateUserOnly: !settings.selfSignUp };
  pool.deletionProtection = settings.retainData ? 'ACTIVE' : 'INACTIVE';
  pool.applyRemovalPolicy(settings.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY);
  cfnResources.cfnIdentityPool.allowUnauthenticatedIdentities = false;
  // Amplify's own web client (for Amplify's JS libraries) would get the
  // CDK's default OAuth settings, a code grant redirecting to
  // https://example.com, once the pool has a hosted UI: no OAuth for it.
  const web = cfnResources.cfnUserPoolClient;
  web.allowedOAuthFlowsUserPoolClient = false;
  web.allowedOAuthFlows = undefined;
  web.allowedOAuthScopes = undefined;
  web.callbackUrLs = undefined;
  web.logoutUrLs = undefined;

  const domain = userPool.addDomain('HostedUi', {
    cognitoDomain: { domainPrefix: settings.authDomainPrefix },
  });

  const desktop = userPool.addClient('DesktopClient', {
    userPoolClientName: `${settings.prefix}desktop`,
    generateSecret: false,
    authFlows: {},
    oAuth: {
      flows: { authorizationCodeGrant: true, implicitCodeGrant: false, clientCredentials: false },
      scopes: DESKTOP_SCOPES,
      callbackUrls: settings.redirectPorts.map((p) => `http://localhost:${p}/callback`),
    },
    supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
    preventUserExistenceErrors: true,
    enableTokenRevocation: true,
    accessTokenValidity: Duration.hours(1),
    idTokenValidity: Duration.hours(1),
    refreshTokenValidity: Duration.days(30),
  });
  // Only refresh: sign-in itself goes through the hosted UI (without
  // this Cognito would also allow SRP and custom flows on the client).
  (desktop.node.defaultChild as cognito.CfnUserPoolClient).explicitAuthFlows = [
    'ALLOW_REFRESH_TOKEN_AUTH',
  ];

  const daemon = userPool.addClient('DaemonClient', {
    userPoolClientName: `${settings.prefix}daemon`,
    generateSecret: false,
    authFlows: { userPassword: true },
    disableOAuth: true,
    supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
    preventUserExistenceErrors: true,
    enableTokenRevocation: true,
    accessTokenValidity: Duration.hours(1),
    idTokenValidity: Duration.hours(1),
    refreshTokenValidity: Duration.days(90),
  });

  return {
    userPool,
    desktop,
    daemon,
    domain,
    authUrl: domain.baseUrl(),
    issuer: `https://cognito-idp.${REGION}.amazonaws.com/${userPool.userPoolId}`,
  };
}
