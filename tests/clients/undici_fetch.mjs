// Node's fetch (undici's) through undici's ProxyAgent, for h3fleet's local
// proxy tests. Usage: node undici_fetch.mjs PROXY_URL URL [NAME:VALUE ...]
// Prints one JSON object: status, headers, body. proxyTunnel: false sends
// a plain http:// request to the proxy in absolute form (no CONNECT).
import { fetch, ProxyAgent } from 'undici';

const [proxy, url, ...pairs] = process.argv.slice(2);
const headers = Object.fromEntries(pairs.map((p) => {
  const i = p.indexOf(':');
  return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
}));
const dispatcher = new ProxyAgent({ uri: proxy, proxyTunnel: false });
const response = await fetch(url, { dispatcher, headers });
const body = await response.text();
console.log(JSON.stringify({
  status: response.status,
  headers: Object.fromEntries(response.headers),
  body,
}));
await dispatcher.close();
