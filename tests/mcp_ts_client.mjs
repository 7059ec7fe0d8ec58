// Drive the official MCP TypeScript SDK client against frontauth and the example MCP server.
//
// Usage: node mcp_ts_client.mjs MCP_URL REDIRECT_URI USERNAME PASSWORD
// The script plays the person's browser for the SDK's OAuth provider: it
// follows the authorization URL to the sign-in page, signs in, approves the
// consent page and hands the code to the transport. It then calls a tool,
// replaces the access token with an invalid one so the next request must
// refresh, calls again, and prints a JSON summary on stdout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [mcpUrl, redirectUri, username, password] = process.argv.slice(2);
const grants = [];

// fetch that records the grant_type of every token request.
async function recordingFetch(url, init) {
  const body = init && typeof init.body !== "undefined" ? init.body : undefined;
  if (String(url).endsWith("/oauth/token") && body) {
    grants.push(new URLSearchParams(String(body)).get("grant_type"));
  }
  return fetch(url, init);
}

class Browser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = { ...(init.headers || {}) };
    if (this.cookies.size) {
      headers.Cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
    }
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const index = pair.indexOf("=");
      this.cookies.set(pair.slice(0, index).trim(), pair.slice(index + 1).trim());
    }
    return response;
  }

  // Follow redirects until a page, or a redirect to the client, which is returned as a URL.
  async follow(url, init) {
    let response = await this.request(url, init);
    let current = url;
    while (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get("location"), current).toString();
      if (location.startsWith(redirectUri)) return { redirect: location };
      current = location;
      response = await this.request(location);
    }
    if (response.status !== 200) throw new Error(`${current} returned ${response.status}: ${await response.text()}`);
    return { page: await response.text(), url: current };
  }

  async submit(page, fields) {
    const form = /<form\b[^>]*\baction="([^"]*)"/i.exec(page.page);
    if (!form) throw new Error(`no form on ${page.url}`);
    const data = new URLSearchParams();
    for (const input of page.page.match(/<input\b[^>]*>/gi) || []) {
      const name = /\bname="([^"]*)"/i.exec(input);
      const value = /\bvalue="([^"]*)"/i.exec(input);
      if (name && !/type="submit"/i.test(input)) data.set(name[1], value ? value[1].replace(/&amp;/g, "&") : "");
    }
    for (const [name, value] of Object.entries(fields)) data.set(name, value);
    const action = new URL(form[1].replace(/&amp;/g, "&"), page.url).toString();
    return this.follow(action, {
      method: "POST",
      body: data.toString(),
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
  }

  async authorize(authorizationUrl) {
    const login = await this.follow(authorizationUrl.toString());
    const consent = await this.submit(login, { username, password });
    const done = await this.submit(consent, { decision: "approve" });
    if (!done.redirect) throw new Error("consent did not redirect to the client");
    const query = new URL(done.redirect).searchParams;
    return { code: query.get("code"), iss: query.get("iss") };
  }
}

class Provider {
  constructor(browser) {
    this.browser = browser;
    this.stored = {};
    this.authorization = null;
  }
  get redirectUrl() { return redirectUri; }
  get clientMetadata() {
    return {
      client_name: "frontauth TypeScript SDK test",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  // frontauth requires state on every authorization request; the SDK sends it only when the provider has state().
  state() { return crypto.randomUUID(); }
  clientInformation() { return this.stored.client; }
  saveClientInformation(client) { this.stored.client = client; }
  tokens() { return this.stored.tokens; }
  saveTokens(tokens) { this.stored.tokens = tokens; }
  saveCodeVerifier(verifier) { this.stored.verifier = verifier; }
  codeVerifier() { return this.stored.verifier; }
  async redirectToAuthorization(url) { this.authorization = await this.browser.authorize(url); }
}

const provider = new Provider(new Browser());
const options = { authProvider: provider, fetch: recordingFetch };
let transport = new StreamableHTTPClientTransport(new URL(mcpUrl), options);
let client = new Client({ name: "frontauth-ts-test", version: "1.0.0" });
try {
  await client.connect(transport);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  await transport.finishAuth(provider.authorization.code);
  transport = new StreamableHTTPClientTransport(new URL(mcpUrl), options);
  client = new Client({ name: "frontauth-ts-test", version: "1.0.0" });
  await client.connect(transport);
}
const tools = await client.listTools();
const added = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
// An access token the resource server rejects makes the next request refresh.
provider.stored.tokens = { ...provider.stored.tokens, access_token: "invalid" };
const whoami = await client.callTool({ name: "whoami", arguments: {} });
await client.close();
console.log(JSON.stringify({
  tools: tools.tools.map((tool) => tool.name).sort(),
  added: added.content[0].text,
  whoami: whoami.structuredContent,
  iss: provider.authorization.iss,
  client_id: provider.stored.client.client_id,
  grants,
}));
