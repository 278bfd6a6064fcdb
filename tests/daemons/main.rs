//! Real daemons under the preload (issue 6): vsftpd, nginx, redis-server, a Node.js `net`
//! server, a Python asyncio server, Java (`ServerSocket` and NIO), and curl outbound.
//!
//! Each daemon runs as a child process in its own process group, on a free loopback port,
//! with its config, logs and pid files in a temp dir, under a policy that allows accepts
//! from 127.0.0.0/8 and ::1 but refuses 127.0.0.2. A refused peer connects from
//! 127.0.0.2 and must read zero bytes and see the connection end (EOF or reset), never a
//! timeout: a held-open connection means the server got it.
//!
//! Nothing is installed here (`.ci/packages.txt` lists the packages). A missing daemon is
//! a failure when `CI` is set; otherwise the test prints `SKIPPED: <daemon> not installed`
//! to the real stderr and returns.

#[path = "../common/mod.rs"]
mod common;

mod banner;
mod curl;
mod nginx;
mod redis;
mod support;
mod vsftpd;
