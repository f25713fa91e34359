// Prints one JSON line per HEP packet received on UDP (or, with "tcp" or
// "tls", on TCP or TLS connections, where HEPv3 packets follow each other,
// each framed by its length): the packet as the hep-js library decodes it, plus the
// (vendor, type) of each chunk in order and the whole packet in hex.
// Usage: node listen.js <ip> <port> [tcp | tls <cert.pem> <key.pem>]
'use strict';
const dgram = require('dgram');
const hep = require('hep-js');

// Chunk 0x0065 (101), the extra correlation OpenSIPS's proto_hep sends, is
// not one hep-js knows; this makes it decode it, as text, into
// rcinfo.extra_correlation.
hep.addVendorExtensions({ 0: { 101: { keyName: 'extra_correlation' } } });

const [host, port] = [process.argv[2], Number(process.argv[3])];
// A large receive buffer: a sender that was stopped for a while sends its
// backlog in one burst, and the default buffer would overflow.
const socket = dgram.createSocket({
  type: host.includes(':') ? 'udp6' : 'udp4',
  recvBufferSize: 4 * 1024 * 1024,
});

function chunkTypes(buf) {
  const types = [];
  for (let at = 6; at + 6 <= buf.length; ) {
    const len = buf.readUInt16BE(at + 4);
    types.push([buf.readUInt16BE(at), buf.readUInt16BE(at + 2)]);
    if (len < 6) break;
    at += len;
  }
  return types;
}

function print(msg) {
  const line = {
    length: msg.length,
    header_length: msg.length >= 6 ? msg.readUInt16BE(4) : null,
    chunks: chunkTypes(msg),
    decoded: hep.decapsulate(msg),
    raw: msg.toString('hex'),
  };
  process.stdout.write(JSON.stringify(line) + '\n');
}

// HEPv3 packets follow each other on a stream, each framed by its length.
function onStream(conn) {
  let pending = Buffer.alloc(0);
  conn.on('data', (data) => {
    pending = Buffer.concat([pending, data]);
    while (pending.length >= 6) {
      const len = pending.readUInt16BE(4);
      if (pending.toString('latin1', 0, 4) !== 'HEP3' || len < 6) {
        process.stderr.write('not a HEPv3 stream; closing\n');
        conn.destroy();
        return;
      }
      if (pending.length < len) break;
      print(pending.subarray(0, len));
      pending = pending.subarray(len);
    }
  });
  conn.on('error', (e) => process.stderr.write(`connection: ${e.message}\n`));
}

const listening = () => process.stdout.write(JSON.stringify({ listening: port }) + '\n');
if (process.argv[4] === 'tcp') {
  require('net').createServer(onStream).listen(port, host, listening);
} else if (process.argv[4] === 'tls') {
  const fs = require('fs');
  const options = { cert: fs.readFileSync(process.argv[5]), key: fs.readFileSync(process.argv[6]) };
  require('tls').createServer(options, onStream).listen(port, host, listening);
} else {
  socket.on('message', print);
  socket.bind(port, host, listening);
}
