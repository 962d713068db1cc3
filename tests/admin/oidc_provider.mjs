// A real OpenID provider (the `oidc-provider` package) for the admin login tests, on 127.0.0.1.
//
//   node oidc_provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI PACKAGE_DIR
//
// PACKAGE_DIR is the installed `oidc-provider` package (scripts/install-test-tools puts it in
// .cache/node-tools/node_modules/oidc-provider).
// Users and their groups are fixed below. The login page is replaced by one POST:
// `POST /interaction/<uid>/login` with the form field `user=<id>` logs that user in and grants the
// requested scopes, then redirects back into the authorization flow.
import http from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [port, clientId, clientSecret, redirectUri, packageDir] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(join(packageDir, 'lib', 'index.js')).href);
const issuer = `http://127.0.0.1:${port}`;

const users = {
  alice: { sub: 'alice', email: 'alice@example.com', groups: ['hub-admins'] },
  dana: { sub: 'dana', email: 'dana@example.com', groups: ['platform-devs', 'staff'] },
  eve: { sub: 'eve', email: 'eve@example.com', groups: ['marketing'] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: ['agenthub-test-cookie-key'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users[id];
    return user ? { accountId: id, claims: async () => user } : undefined;
  },
});

const oidc = provider.callback();

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

const server = http.createServer(async (req, res) => {
  const match = /^\/interaction\/([^/]+)\/login$/.exec(req.url);
  if (req.method === 'POST' && match) {
    try {
      const form = await readForm(req);
      const accountId = form.get('user');
      if (!users[accountId]) {
        res.writeHead(400).end('unknown user');
        return;
      }
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false },
      );
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
    return;
  }
  if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('POST user=<id> to ./login');
    return;
  }
  oidc(req, res);
});

server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
