//! The test command really starts every server the suites need, on loopback.
//!
//! Each check speaks a little of the server's own protocol, so a port held by something else
//! does not pass for the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dlab_tests::servers::{Server, require};

fn connect(server: Server) -> TcpStream {
    let stream = TcpStream::connect(server.host_port()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn redis_answers_ping() {
    if !require(Server::Redis) {
        return;
    }
    let mut s = connect(Server::Redis);
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    assert_eq!(read_some(&mut s), b"+PONG\r\n");
}

#[test]
fn moto_answers_http() {
    if !require(Server::Moto) {
        return;
    }
    let mut s = connect(Server::Moto);
    s.write_all(b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&read_some(&mut s)).to_string();
    assert!(head.starts_with("HTTP/1."), "not HTTP: {head:?}");
}

#[test]
fn mongo_wire_server_answers_hello() {
    if !require(Server::Mongo) {
        return;
    }
    // OP_MSG with the document {hello: 1, $db: "admin"}.
    let mut doc = Vec::new();
    let mut body = Vec::new();
    body.push(0x10); // int32
    body.extend_from_slice(b"hello\0");
    body.extend_from_slice(&1i32.to_le_bytes());
    body.push(0x02); // string
    body.extend_from_slice(b"$db\0");
    body.extend_from_slice(&6i32.to_le_bytes());
    body.extend_from_slice(b"admin\0");
    body.push(0);
    doc.extend_from_slice(&((body.len() + 4) as i32).to_le_bytes());
    doc.extend_from_slice(&body);
    let mut msg = Vec::new();
    let total = 16 + 4 + 1 + doc.len();
    msg.extend_from_slice(&(total as i32).to_le_bytes());
    msg.extend_from_slice(&1i32.to_le_bytes()); // requestID
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2013i32.to_le_bytes()); // OP_MSG
    msg.extend_from_slice(&0u32.to_le_bytes()); // flags
    msg.push(0); // section kind 0
    msg.extend_from_slice(&doc);
    let mut s = connect(Server::Mongo);
    s.write_all(&msg).unwrap();
    let reply = read_some(&mut s);
    assert!(reply.len() >= 16, "short reply");
    let op = i32::from_le_bytes(reply[12..16].try_into().unwrap());
    assert_eq!(op, 2013, "expected an OP_MSG reply");
    assert!(
        reply.windows(2).any(|w| w == b"ok"),
        "reply has no ok field"
    );
}
