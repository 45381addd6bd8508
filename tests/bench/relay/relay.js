// The benchmark baseline: a socket.io 4 room relay, the kind of server Dungeon Lab runs today.
// It does what a relay must and nothing more: no auth, no storage, no validation.
//
//   join    {sessionId}          -> "joined" {sessionId} to the sender, "presence" to the room
//   submit  {id, sessionId, ...} -> "event:confirmed" {tempId, eventId, sequence, timestamp}
//                                   to the sender, and "event:applied" {...event, sequence,
//                                   timestamp} to the rest of the room
//
// The sequence is a per-room counter, as our server's per-session sequence. Event names and
// payload fields match the Dungeon Lab protocol so the bench reads both the same way.
//
// Usage: node relay.js [--port N]   (port 0 = any free port). Listens on 127.0.0.1 only and
// prints "relay listening on 127.0.0.1:PORT" once ready.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function parsePort(argv) {
  const i = argv.indexOf("--port");
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : 0;
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  // Clients of the bench speak the WebSocket transport directly (no long-polling upgrade).
  transports: ["websocket"],
  // Benchmarks keep sockets open through long set-ups: no ping timeouts in the middle.
  pingInterval: 600000,
  pingTimeout: 600000,
  maxHttpBufferSize: 128 * 1024,
  serveClient: false,
});

const sequences = new Map();

io.on("connection", (socket) => {
  let room = null;
  socket.on("join", (msg) => {
    if (!msg || typeof msg.sessionId !== "string") {
      socket.emit("error", { code: "invalid_message", message: "join needs sessionId" });
      return;
    }
    room = msg.sessionId;
    socket.join(room);
    socket.emit("joined", { sessionId: room });
    socket.to(room).emit("presence", { sessionId: room, status: "joined" });
  });
  socket.on("submit", (event) => {
    if (room === null || !event || typeof event.id !== "string" || event.sessionId !== room) {
      socket.emit("event:error", {
        tempId: event && event.id,
        code: "not_subscribed",
        message: "join the session first",
      });
      return;
    }
    const sequence = (sequences.get(room) || 0) + 1;
    sequences.set(room, sequence);
    const timestamp = Date.now();
    socket.emit("event:confirmed", {
      tempId: event.id,
      eventId: event.id,
      sequence,
      timestamp,
      duplicate: false,
    });
    socket.to(room).emit("event:applied", { ...event, sequence, timestamp });
  });
});

httpServer.listen(parsePort(process.argv), "127.0.0.1", () => {
  const { address, port } = httpServer.address();
  console.log(`relay listening on ${address}:${port}`);
});

function stop() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
