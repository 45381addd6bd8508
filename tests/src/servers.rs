//! Locations of the real test servers and the skip-or-fail rule.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Set by the README's test command: real-server tests must run and must not skip.
pub const TEST_SERVERS_VAR: &str = "DLAB_TEST_SERVERS";

/// A real backing server a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Redis, `REDIS_URL` (default `redis://127.0.0.1:6390`).
    Redis,
    /// nx-27017 speaking the MongoDB wire protocol, `MONGODB_URI` (default `mongodb://127.0.0.1:27118`).
    Mongo,
    /// moto's DynamoDB, `AWS_ENDPOINT_URL` (default `http://127.0.0.1:5000`).
    Moto,
    /// A three-node Redis Cluster (stands in for MemoryDB), `REDIS_CLUSTER_URL` (default
    /// `redis://127.0.0.1:6391`, any node). Only the Redis adapter's suites use it.
    RedisCluster,
}

impl Server {
    /// The servers every end-to-end world needs (the test command also starts
    /// [`Server::RedisCluster`], which only the Redis adapter's suites use).
    pub const ALL: [Server; 3] = [Server::Redis, Server::Mongo, Server::Moto];

    /// Human name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Server::Redis => "Redis",
            Server::Mongo => "MongoDB (nx-27017)",
            Server::Moto => "moto (DynamoDB)",
            Server::RedisCluster => "Redis Cluster",
        }
    }

    /// The environment variable holding this server's URL.
    pub fn url_var(self) -> &'static str {
        match self {
            Server::Redis => "REDIS_URL",
            Server::Mongo => "MONGODB_URI",
            Server::Moto => "AWS_ENDPOINT_URL",
            Server::RedisCluster => "REDIS_CLUSTER_URL",
        }
    }

    /// The URL the test command uses when the variable is unset.
    pub fn default_url(self) -> &'static str {
        match self {
            Server::Redis => "redis://127.0.0.1:6390",
            Server::Mongo => "mongodb://127.0.0.1:27118",
            Server::Moto => "http://127.0.0.1:5000",
            Server::RedisCluster => "redis://127.0.0.1:6391",
        }
    }

    /// The configured URL.
    pub fn url(self) -> String {
        std::env::var(self.url_var()).unwrap_or_else(|_| self.default_url().to_owned())
    }

    /// `host:port` of the configured URL.
    pub fn host_port(self) -> String {
        host_port_of(&self.url())
    }

    /// Whether a TCP connection to the server succeeds within a short timeout.
    pub fn reachable(self) -> bool {
        resolve(&self.host_port())
            .map(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
            .unwrap_or(false)
    }
}

/// Whether the suite runs under the README's test command (real servers required).
pub fn servers_required() -> bool {
    std::env::var(TEST_SERVERS_VAR).is_ok_and(|v| v == "1")
}

/// What a real-server test should do about `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Reachable: run.
    Run,
    /// Not required and not reachable: skip, printing the message.
    Skip(String),
    /// Required but not reachable: fail with the message.
    Fail(String),
}

/// Decides whether a test needing `server` runs, skips or fails.
pub fn availability(server: Server) -> Availability {
    if server.reachable() {
        return Availability::Run;
    }
    let how = format!(
        "{} is not reachable at {} (set {}); start the test servers with `bash infra/services.sh install && bash infra/services.sh start`, or run everything with `bash infra/test.sh`",
        server.name(),
        server.url(),
        server.url_var()
    );
    if servers_required() {
        Availability::Fail(how)
    } else {
        Availability::Skip(how)
    }
}

/// For use at the top of a real-server test: returns `false` (after printing why) when the test
/// should skip, panics with a message naming the server when it is required but down.
pub fn require(server: Server) -> bool {
    match availability(server) {
        Availability::Run => true,
        Availability::Skip(msg) => {
            eprintln!("skipping: {msg}");
            false
        }
        Availability::Fail(msg) => panic!("{TEST_SERVERS_VAR}=1 but {msg}"),
    }
}

fn host_port_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

fn resolve(host_port: &str) -> Option<SocketAddr> {
    host_port.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_extracted_from_urls() {
        assert_eq!(host_port_of("redis://127.0.0.1:6390"), "127.0.0.1:6390");
        assert_eq!(
            host_port_of("redis://:pw@127.0.0.1:6390/0"),
            "127.0.0.1:6390"
        );
        assert_eq!(
            host_port_of("mongodb://127.0.0.1:27118/?directConnection=true"),
            "127.0.0.1:27118"
        );
        assert_eq!(host_port_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
