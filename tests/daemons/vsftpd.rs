//! vsftpd: refused before its banner, PASV and EPSV downloads byte-exact.

use crate::support::*;

#[test]
fn vsftpd_refuses_before_banner_and_serves_pasv_download() {
    let Some(vsftpd) = require("vsftpd") else {
        return;
    };
    let Some(python) = python3() else {
        return;
    };
    let dir = TempDir::new("vsftpd");
    let policy = write_policy(&dir);
    let root = dir.path().join("ftproot");
    let empty = dir.path().join("empty");
    // vsftpd refuses a chroot it or the ftp user could write to; do not depend on umask.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &root, &empty] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = test_bytes(300_000);
    std::fs::write(root.join("data.bin"), &data).unwrap();

    let port = free_port();
    let pasv = free_port_range(10);
    let log = dir.path().join("vsftpd.log");
    // As root vsftpd drops to the `ftp` user and chroots into anon_root for anonymous
    // sessions; as another user it can only run as that user.
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let conf = format!(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
         background=NO\nanonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\n\
         no_anon_password=YES\nanon_root={root}\nsecure_chroot_dir={empty}\n\
         pasv_enable=YES\npasv_address=127.0.0.1\npasv_min_port={pasv}\npasv_max_port={pmax}\n\
         port_enable=NO\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
         xferlog_enable=YES\nxferlog_std_format=NO\nlog_ftp_protocol=YES\n\
         vsftpd_log_file={log}\nsyslog_enable=NO\nuse_localtime=NO\n\
         ftpd_banner=sockexit test ftpd ready\n{user}",
        root = root.display(),
        empty = empty.display(),
        pmax = pasv + 9,
        log = log.display(),
        user = if root_user {
            ""
        } else {
            "run_as_launching_user=YES\n"
        },
    );
    let conf_path = dir.write("vsftpd.conf", &conf);
    let mut cmd = preloaded(&vsftpd, &policy);
    cmd.arg(&conf_path);
    let mut d = Daemon::spawn("vsftpd", cmd, dir.path()).with_log(log.clone());
    d.wait_listening(port);

    // vsftpd greets at once, so a single `2` reaching the peer would show.
    for _ in 0..3 {
        if let Err(e) = refused_peer(port, b"") {
            panic!("vsftpd: {e}\n{}", d.output());
        }
    }

    let script = "import ftplib, sys\n\
        f = ftplib.FTP()\n\
        sys.stderr.write(f.connect('127.0.0.1', int(sys.argv[1]), timeout=10) + '\\n')\n\
        f.login()\n\
        f.set_pasv(True)\n\
        out = sys.stdout.buffer\n\
        f.retrbinary('RETR data.bin', out.write)\n\
        out.flush()\n\
        f.quit()\n";
    let out = Command::new(&python)
        .args(["-c", script, &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run python3 ftplib");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ftplib download failed: {:?}\n{stderr}\n{}",
        out.status,
        d.output()
    );
    assert!(
        stderr.starts_with("220 sockexit test ftpd ready"),
        "allowed client's greeting: {stderr}"
    );
    assert!(
        out.stdout == data,
        "PASV download not byte-exact: got {} bytes, want {}",
        out.stdout.len(),
        data.len()
    );
    d.assert_alive();

    // A second, unrelated client: lftp, over EPSV this time.
    let mut downloads = 1;
    if let Some(lftp) = require("lftp") {
        downloads += 1;
        let got = dir.path().join("lftp-data.bin");
        let script = format!(
            "set net:timeout 10; set net:max-retries 1; set ftp:passive-mode on; \
             set ftp:prefer-epsv yes; open -u anonymous,x ftp://127.0.0.1:{port}; \
             get data.bin -o {}",
            got.display()
        );
        let out = Command::new(lftp)
            .args(["-c", &script])
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run lftp");
        assert!(
            out.status.success(),
            "lftp download failed: {:?} {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            d.output()
        );
        assert!(
            std::fs::read(&got).is_ok_and(|b| b == data),
            "lftp's EPSV download not byte-exact"
        );
        d.assert_alive();
    }

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        log_text.matches("OK DOWNLOAD").count(),
        downloads,
        "vsftpd log: one download per client:\n{log_text}"
    );
    assert!(
        !log_text.contains("127.0.0.2"),
        "vsftpd saw a refused peer:\n{log_text}"
    );
    assert_audited_refusals(
        &dir,
        3,
        "accept",
        "refuse-127-0-0-2",
        &vsftpd,
        REFUSED_REMOTE,
    );
    d.stop();
}
