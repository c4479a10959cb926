// Verifies one keyd token with jose's remote JWKS client, as a Node.js IDA
// would: node verify.mjs JWKS_URL TOKEN ALG ISSUER AUDIENCE
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, token, alg, issuer, audience] = process.argv.slice(2);
try {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { algorithms: [alg], issuer, audience });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (err) {
  console.error(`jose refused the token: ${err.code || ''} ${err.message}`);
  process.exit(1);
}
