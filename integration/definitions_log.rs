//! The definitions log under a disk that refuses writes: the real broker binary runs with a file-size limit
//! (RLIMIT_FSIZE, with SIGXFSZ ignored, so an over-long write fails with EFBIG as on a full disk). A durable
//! declaration whose log entry cannot be written is answered with 541 INTERNAL_ERROR and leaves nothing
//! behind; the broker keeps serving, and what it did record survives a restart.

use crate::common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Files the broker writes may not grow past this.
const FILE_LIMIT: u64 = 64 * 1024;

struct Limited {
    child: Child,
    url: String,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Limited {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.args([
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--log-level",
        "error",
        "--data-dir",
    ])
    .arg(dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls are made (setrlimit, signal).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: FILE_LIMIT,
                rlim_max: FILE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn warren");
    let port = listening_port(child.stdout.take().expect("stdout")).expect("LISTENING line");
    Limited {
        child,
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    }
}

/// Queue arguments carrying `size` bytes of padding (an argument RabbitMQ ignores).
fn padded(size: usize) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-padding".into(),
        AMQPValue::LongString(LongString::from("p".repeat(size))),
    );
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_declaration_the_log_cannot_record_is_refused_and_leaves_nothing() {
    if std::env::var("AMQP_URL").is_ok() {
        // Runs Warren's own binary under a file-size limit; nothing to compare on another broker.
        return;
    }
    let dir = std::env::temp_dir().join(unique("warren-deflog-full"));
    let b = start(&dir);
    let broker = TestBroker::from_url(b.url.clone());
    let conn = connect(&broker).await;
    let ch = open(&conn).await;
    within(ch.queue_declare("fits".into(), durable(), padded(8 * 1024)))
        .await
        .expect("an entry of about 33 KiB fits under the limit");

    let err = within(ch.queue_declare("too-big".into(), durable(), padded(12 * 1024)))
        .await
        .expect_err("the log write fails");
    let (code, text) = amqp_error(&err);
    assert_eq!(code, 541, "{text}");
    assert!(
        text.starts_with("INTERNAL_ERROR - cannot record the change in the definitions log"),
        "{text}"
    );

    // Nothing half-applied: the queue does not exist, and the broker serves on.
    let conn = connect(&broker).await;
    assert!(!queue_exists(&conn, "too-big").await);
    assert!(queue_exists(&conn, "fits").await);
    let ch = open(&conn).await;
    within(ch.queue_declare("after".into(), durable(), FieldTable::default()))
        .await
        .expect("small entries are recorded again once the log is repaired");

    drop(conn);
    drop(b);
    let b = start(&dir);
    let conn = connect(&TestBroker::from_url(b.url.clone())).await;
    assert!(queue_exists(&conn, "fits").await);
    assert!(queue_exists(&conn, "after").await);
    assert!(!queue_exists(&conn, "too-big").await);
    drop(conn);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
