//! A spot interruption notice seen through IMDSv2 (a local stand-in that insists on the token)
//! is recorded, marks the run interrupted, and ships the spool at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::summary::RunStatus;
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_monitor::{run_command, CommandSpec, ImdsOptions, MonitorOptions, UploadOptions};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// IMDSv2 stand-in: 404 for the first `quiet` metadata requests, then a terminate notice.
fn imds(quiet: usize) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut gets = 0;
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let resp = if req.starts_with("PUT /latest/api/token") {
                "HTTP/1.1 200 OK\r\n\r\nT0K3N".to_string()
            } else if !req.contains("X-aws-ec2-metadata-token: T0K3N") {
                "HTTP/1.1 401 Unauthorized\r\n\r\n".to_string()
            } else {
                gets += 1;
                if gets <= quiet {
                    "HTTP/1.1 404 Not Found\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\n\r\n{\"action\":\"terminate\",\"time\":\"2026-11-26T03:00:00Z\"}".to_string()
                }
            };
            let _ = c.write_all(resp.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn spot_notice_is_recorded_and_ships_the_spool() {
    // GIVEN IMDS answering "no notice" twice, then a terminate notice, and a 3 s job
    let spool = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryObjectStore::default());
    let opts = MonitorOptions {
        interval: Duration::from_millis(200),
        job: "spot".into(),
        run_id: "r-spot".into(),
        gpu: false,
        handle_signals: false,
        spool_dir: Some(spool.path().to_path_buf()),
        upload: Some(UploadOptions {
            store: store.clone(),
            every: Duration::from_secs(60),
            runtime: None,
            finish_timeout: Duration::from_secs(10),
        }),
        imds: Some(ImdsOptions {
            endpoint: imds(2),
            every: Duration::from_millis(300),
        }),
        ..Default::default()
    };
    let cmd = CommandSpec {
        argv: vec!["sleep".into(), "3".into()],
        ..Default::default()
    };
    // WHEN the job runs to its end
    let out = run_command(&cmd, &opts, &mut |_| {}).unwrap();
    // THEN the notice is recorded, the run is interrupted, and a part was cut at the notice
    // (before the 60 s upload period) as well as at the end
    let n = out.spot_notice.expect("notice seen");
    assert_eq!(
        (n.action.as_str(), n.time.as_str()),
        ("terminate", "2026-11-26T03:00:00Z")
    );
    assert!(out.interrupted);
    assert_eq!(out.summary.status, RunStatus::Interrupted);
    let keys: Vec<String> = store.0.lock().unwrap().keys().cloned().collect();
    let parts = keys.iter().filter(|k| k.contains("/run=r-spot/part-")).count();
    assert!(parts >= 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("r-spot.exit")), "{keys:?}");
    let marker = store
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with(".exit"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(String::from_utf8_lossy(&marker).contains("terminate"));
}
