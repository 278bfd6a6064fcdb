//! Audit-log I/O (owned by the audit work): the file and syslog targets.
#![allow(dead_code)]
