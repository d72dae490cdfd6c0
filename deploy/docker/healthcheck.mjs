// Container HEALTHCHECK without curl: GET /ping on the XKS listener over loopback.
// Exit 0 when the proxy answers 200, or when the listener refuses us for lack of a client certificate
// (clientAuth.mode: required): it answered the handshake, so the process is alive. Exit 1 otherwise.
// Liveness only; readiness (an HSM member able to serve) is GET /ready.
//   HYOK_HEALTHCHECK_URL  default https://127.0.0.1:${HYOK_LISTEN_PORT:-8443}/ping
import { request } from 'node:https';

const port = process.env.HYOK_LISTEN_PORT || '8443';
const url = new URL(process.env.HYOK_HEALTHCHECK_URL || `https://127.0.0.1:${port}/ping`);
// TLS errors meaning "the server wants a client certificate", raised after it answered the handshake.
const CLIENT_CERT_REFUSALS = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
]);
// Over TLS 1.2 OpenSSL names the alert only in the message (code EPROTO).
const CLIENT_CERT_ALERT = /alert (certificate required|handshake failure|bad certificate)/;

const done = (code, message) => {
  process.stdout.write(`${message}\n`);
  process.exit(code);
};

const req = request(url, {
  method: 'GET',
  // Loopback liveness only: the certificate is for the public name, and nothing secret is sent.
  rejectUnauthorized: false,
  timeout: 2000,
});
req.on('response', (res) => {
  res.resume();
  if (res.statusCode === 200) done(0, 'ok');
  else done(1, `unhealthy: /ping answered ${res.statusCode}`);
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
req.on('error', (error) => {
  if (CLIENT_CERT_REFUSALS.has(error.code) || (error.code === 'EPROTO' && CLIENT_CERT_ALERT.test(error.message))) {
    done(0, `alive (listener requires a client certificate: ${error.code})`);
  }
  done(1, `unhealthy: ${error.code ?? ''} ${error.message}`);
});
req.end();
