// A real OpenID provider on loopback for the tests: oidc-provider with its development login and
// consent pages (any login name is accepted; it becomes the account's `sub` and its email). A login name
// "unverified:<email>" gets that email with email_verified false, as a provider that lets users type it in.
// Configured from the environment: OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI.
import Provider from "oidc-provider";

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"] },
  cookies: { keys: ["test-only-cookie-key"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const unverified = id.startsWith("unverified:");
        return { sub: id, email: id.replace(/^unverified:/, ""), email_verified: !unverified };
      },
    };
  },
});

provider.listen(port, "127.0.0.1", () => console.log(`listening ${issuer}`));
