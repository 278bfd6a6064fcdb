//! nginx: concurrent mixed clients and a 10,000-connection soak.

use crate::support::*;

pub(crate) struct Nginx {
    daemon: Daemon,
    port: u16,
    page: Vec<u8>,
    access_log: PathBuf,
    error_log: PathBuf,
}

pub(crate) fn start_nginx(dir: &TempDir, nginx: &Path) -> Nginx {
    let policy = write_policy(dir);
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let mut page = b"<html><body><h1>sockexit nginx test</h1>\n".to_vec();
    for i in 0..100 {
        page.extend_from_slice(format!("<p>line {i} of the page</p>\n").as_bytes());
    }
    page.extend_from_slice(b"</body></html>\n");
    std::fs::write(www.join("index.html"), &page).unwrap();

    let port = free_port();
    let p = dir.path().display().to_string();
    let access_log = dir.path().join("logs/access.log");
    let error_log = dir.path().join("logs/error.log");
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\n\
         pid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
         events {{ worker_connections 4096; multi_accept on; use epoll; }}\n\
         http {{\n\
           access_log {p}/logs/access.log;\n\
           client_body_temp_path {p}/tmp/body;\n\
           proxy_temp_path {p}/tmp/proxy;\n\
           fastcgi_temp_path {p}/tmp/fastcgi;\n\
           uwsgi_temp_path {p}/tmp/uwsgi;\n\
           scgi_temp_path {p}/tmp/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} backlog=4096;\n\
             listen [::1]:{port} backlog=4096;\n\
             root {p}/www;\n\
             location / {{ }}\n\
           }}\n\
         }}\n"
    );
    let conf_path = dir.write("nginx.conf", &conf);
    let mut cmd = preloaded(nginx, &policy);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&error_log);
    let mut daemon = Daemon::spawn("nginx", cmd, dir.path()).with_log(error_log.clone());
    daemon.wait_listening(port);
    let master = daemon.pid();
    let deadline = Instant::now() + START_TIMEOUT;
    while processes(|ppid, _| ppid == master).len() < 2 {
        daemon.assert_alive();
        assert!(
            Instant::now() < deadline,
            "nginx workers did not start\n{}",
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        daemon,
        port,
        page,
        access_log,
        error_log,
    }
}

impl Nginx {
    pub(crate) fn workers(&self) -> Vec<i32> {
        let master = self.daemon.pid();
        processes(|ppid, _| ppid == master)
    }

    /// One allowed `GET /` that must return exactly the page; every eighth client comes
    /// over IPv6 from ::1.
    pub(crate) fn get(&self, i: usize) -> Result<(), String> {
        let mut s = if i.is_multiple_of(8) {
            allowed_client_v6(self.port)
        } else {
            allowed_client(self.port)
        }
        .map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("GET /?c={i} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .map_err(|e| format!("send request: {e}"))?;
        let (resp, end) = read_all(&mut s);
        if end != End::Eof {
            return Err(format!(
                "response ended with {end:?} after {} bytes",
                resp.len()
            ));
        }
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no header end in {} bytes", resp.len()))?;
        let head = String::from_utf8_lossy(&resp[..split]);
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(format!("status: {}", head.lines().next().unwrap_or("")));
        }
        if resp[split + 4..] != self.page[..] {
            return Err(format!(
                "body differs: {} bytes, want {}",
                resp.len() - split - 4,
                self.page.len()
            ));
        }
        Ok(())
    }

    pub(crate) fn refused(&self) -> Result<(), String> {
        refused_peer(self.port, b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    }

    /// Master and the same workers alive, nothing alarming in the error log, and no
    /// request from a refused peer in the access log.
    pub(crate) fn assert_healthy(&mut self, workers: &[i32]) {
        self.daemon.assert_alive();
        assert_eq!(
            self.workers(),
            workers,
            "nginx workers changed (one died and was respawned?)\n{}",
            self.daemon.output()
        );
        let err = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        for bad in ["[alert]", "[emerg]", "[crit]", "exited on signal"] {
            assert!(!err.contains(bad), "nginx error log has {bad}:\n{err}");
        }
        let access = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        assert!(
            !access.contains("127.0.0.2"),
            "nginx logged a request from a refused peer"
        );
    }

    pub(crate) fn access_lines(&self) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

#[test]
fn nginx_400_mixed_concurrent_clients() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let dir = TempDir::new("nginx");
    let mut n = start_nginx(&dir, &nginx);
    let workers = n.workers();
    assert_eq!(workers.len(), 2, "want 2 nginx workers");

    let failures = mixed_burst(400, |i| n.get(i), |_| n.refused());
    assert_no_failures("nginx burst", &failures);
    n.assert_healthy(&workers);
    assert_eq!(
        n.access_lines(),
        200,
        "access log: one line per allowed client"
    );
    n.get(400).expect("nginx still serves after the burst");
    // Two worker processes append to one audit file at once.
    assert_audited_refusals(
        &dir,
        200,
        "accept",
        "refuse-127-0-0-2",
        &nginx,
        REFUSED_REMOTE,
    );
    n.daemon.stop();
}

#[test]
fn nginx_soak_10000_alternating_connections() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    const TOTAL: usize = 10_000;
    const THREADS: usize = 8;
    let dir = TempDir::new("nginx-soak");
    let mut n = start_nginx(&dir, &nginx);
    let workers = n.workers();
    n.get(0).expect("warm-up request");
    // Counted once the worker has closed the warm-up connection (the client's close
    // reaches it a moment later): settled when two counts 100 ms apart agree.
    let count = || workers.iter().map(|&w| fd_count(w)).collect::<Vec<usize>>();
    let settle = Instant::now() + Duration::from_secs(3);
    let mut fds_before = count();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let again = count();
        if again == fds_before || Instant::now() > settle {
            break;
        }
        fds_before = again;
    }

    let start = Instant::now();
    // A broken library could make every client wait out its timeout: stop early.
    const GIVE_UP_AFTER: usize = 8;
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let per_thread: Vec<(usize, usize, Vec<String>)> = std::thread::scope(|sc| {
        let (n, failed) = (&n, &failed);
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                sc.spawn(move || {
                    let (mut ok, mut cut, mut fails) = (0, 0, Vec::new());
                    for i in (t..TOTAL).step_by(THREADS) {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) >= GIVE_UP_AFTER {
                            break;
                        }
                        let before = fails.len();
                        if i % 2 == 0 {
                            match n.get(i) {
                                Ok(()) => ok += 1,
                                Err(e) => fails.push(format!("allowed {i}: {e}")),
                            }
                        } else {
                            match n.refused() {
                                Ok(()) => cut += 1,
                                Err(e) => fails.push(format!("refused {i}: {e}")),
                            }
                        }
                        if fails.len() > before {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    (ok, cut, fails)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("soak thread"))
            .collect()
    });
    let elapsed = start.elapsed();
    let served: usize = per_thread.iter().map(|r| r.0).sum();
    let cut: usize = per_thread.iter().map(|r| r.1).sum();
    let failures: Vec<String> = per_thread.into_iter().flat_map(|r| r.2).collect();

    // Workers close finished connections asynchronously; give them a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after: Vec<usize> = workers.iter().map(|&w| fd_count(w)).collect();
    while fds_after != fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        fds_after = workers.iter().map(|&w| fd_count(w)).collect();
    }
    let logged = n.access_lines() - 1;
    let skipped = if no_preload() {
        " (SOCKEXIT_TEST_NO_PRELOAD: refused peers not run)"
    } else {
        ""
    };
    say(&format!(
        "nginx soak{skipped}: {TOTAL} connections in {:.1}s: {served} allowed served byte-exact, \
         {cut} refused cut off with 0 bytes, {} failures; worker fds before {fds_before:?} \
         after {fds_after:?}; access log lines {logged}",
        elapsed.as_secs_f64(),
        failures.len()
    ));
    assert_no_failures("nginx soak", &failures);
    assert_eq!(served, TOTAL / 2, "allowed responses lost");
    assert_eq!(cut, TOTAL / 2, "refused peers not cut off");
    assert_eq!(
        fds_after, fds_before,
        "nginx worker file descriptors leaked"
    );
    assert_eq!(logged, TOTAL / 2, "nginx saw exactly the allowed requests");
    n.assert_healthy(&workers);
    assert_audited_refusals(
        &dir,
        TOTAL / 2,
        "accept",
        "refuse-127-0-0-2",
        &nginx,
        REFUSED_REMOTE,
    );
    n.daemon.stop();
}
