// The collector bench's floor (collector-load.ts, wsFloor): a bare `ws` server that acks each alert
// batch once it is parsed and does nothing else: no tokens, no validation, no store, no other
// thread. Under the same load client it shows what the held connections and the client cost on
// these cores by themselves. Prints its port on stdout.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../../shared/protocol.js';

const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
const http = createServer();
http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
  ws.on('error', () => ws.terminate());
  ws.on('message', (data) => {
    let m: { type?: unknown; seq?: unknown; alerts?: unknown };
    try {
      m = JSON.parse(String(data)) as typeof m;
    } catch {
      return;
    }
    if (m.type === 'alerts' && typeof m.seq === 'number' && Array.isArray(m.alerts)) {
      ws.send(`{"type":"ack","v":${PROTOCOL_VERSION},"upTo":${m.seq + m.alerts.length - 1}}`);
    }
  });
}));
http.listen(0, '127.0.0.1', () => process.stdout.write(`${(http.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
